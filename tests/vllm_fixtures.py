"""Session fixtures for the tests against a real vLLM (CPU build here, unchanged on a GPU box):
the runtime (provisioned on first use, like `gristmill demo` does) and the tiny local model."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from gristmill.backends.vllm.smollm2 import ensure_smollm2
from gristmill.backends.vllm.runtime import Runtime, ensure_runtime, gristmill_importable

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = ROOT / "backends" / "vllm" / "tiny_model.py"  # a script: the runtime has no gristmill


def pytest_collection_finish(session: pytest.Session) -> None:
    """Provision before the first test runs, outside every test's timeout: on a new machine
    the runtime takes minutes to install and the demo model to convert."""
    items = session.items
    if session.config.option.collectonly or not any(i.get_closest_marker("vllm") for i in items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    say = (lambda line: reporter.write_line(f"[vllm] {line}")) if reporter else print
    runtime = ensure_runtime(say=say)
    if any("smollm2" in getattr(i, "fixturenames", ()) for i in items):
        ensure_smollm2(runtime, say=say)


@pytest.fixture(scope="session")
def vllm_runtime() -> Runtime:
    return ensure_runtime(say=lambda line: print(f"[vllm runtime] {line}"))


@pytest.fixture(scope="session")
def smollm2(vllm_runtime: Runtime) -> Path:
    """The demo's model, converted into the model cache on first use."""
    return ensure_smollm2(vllm_runtime, say=lambda line: print(f"[smollm2] {line}"))


@pytest.fixture(scope="session")
def tiny_model(vllm_runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2-layer Llama with a trained BPE tokenizer and a ChatML template, built in the
    runtime's interpreter (it has transformers)."""
    out = tmp_path_factory.mktemp("tiny-model")
    subprocess.run([str(vllm_runtime.python), str(TINY_MODEL), str(out)], env=vllm_runtime.env(),
                   check=True, capture_output=True, timeout=300)
    yield out


@pytest.fixture(scope="session")
def runtime_env(vllm_runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The runtime's environment, with this gristmill importable by the runtime's Python."""
    site = tmp_path_factory.mktemp("gristmill-for-runtime")
    return {**vllm_runtime.env(), **gristmill_importable(site)}
