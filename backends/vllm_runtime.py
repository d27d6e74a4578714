"""Where vLLM comes from: the `vllm` of this environment (a GPU box with `pip install vllm`),
or vLLM's CPU build provisioned once into gristmill's own cached virtual environment.

CONTRACT (other modules rely on it; keep these names):
    runtime = ensure_runtime(say=print)   # idempotent; provisions on first use
    runtime.python      # Path of the Python that can `import vllm`
    runtime.vllm        # argv prefix that runs `vllm` (e.g. [python, "-m", "vllm.entrypoints.cli.main"])
    runtime.env()       # environment for vLLM processes (VLLM_TARGET_DEVICE=cpu, threads, ...)
    runtime_home()      # $GRISTMILL_VLLM_HOME or ~/.cache/gristmill/vllm-cpu
A provisioned home holds a `.ready` marker; without it the home is (re)built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


def runtime_home() -> Path:
    home = os.environ.get("GRISTMILL_VLLM_HOME")
    if home:
        return Path(home)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gristmill" / "vllm-cpu"


@dataclass(frozen=True)
class Runtime:
    python: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def vllm(self) -> list[str]:
        return [str(self.python), "-m", "vllm.entrypoints.cli.main"]

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env}


CPU_ENV = {"VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1"}


def ensure_runtime(say: Callable[[str], None] = print) -> Runtime:
    """STUB until provisioning lands: use a home that is already provisioned."""
    home = runtime_home()
    if not (home / ".ready").exists():
        raise RuntimeError(f"no vLLM runtime at {home} (provisioning not implemented yet)")
    return Runtime(home / "bin" / "python", dict(CPU_ENV))
