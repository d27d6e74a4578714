"""Session fixtures for the tests against a real vLLM (CPU build here, unchanged on a GPU box):
the runtime (provisioned on first use, like `gristmill demo` does) and the tiny local model."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from backends.vllm_runtime import Runtime, ensure_runtime

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def vllm_runtime() -> Runtime:
    return ensure_runtime(say=lambda line: print(f"[vllm runtime] {line}"))


@pytest.fixture(scope="session")
def tiny_model(vllm_runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2-layer Llama with a trained BPE tokenizer and a ChatML template, built in the
    runtime's interpreter (it has transformers)."""
    out = tmp_path_factory.mktemp("tiny-model")
    env = {**vllm_runtime.env(), "PYTHONPATH": str(ROOT)}
    subprocess.run([str(vllm_runtime.python), "-m", "backends.tiny_model", str(out)], env=env,
                   check=True, capture_output=True, timeout=300)
    yield out
