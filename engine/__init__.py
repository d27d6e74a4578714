"""gristmill's engine: `await gristmill.run(config)` or `gristmill.run_sync(config)`."""

from __future__ import annotations

from typing import Any

__all__ = ["load_config", "run", "run_sync", "RunOptions"]


def __getattr__(name: str) -> Any:
    # Lazy: `import gristmill` stays cheap for the CLI's start-up.
    if name in ("run", "run_sync", "RunOptions"):
        from gristmill.runs import runner as _run_module

        return getattr(_run_module, name)
    if name == "load_config":
        from gristmill.config.load import load_config

        return load_config
    raise AttributeError(name)
