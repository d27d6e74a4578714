"""Running a pipeline: `run` is a coroutine (use it inside a notebook's loop); `run_sync` works
with or without a running loop. The run itself is `gristmill.runs.lifecycle.Run`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from gristmill.config.pipeline import PipelineConfig
from gristmill.runs.lifecycle import Run
from gristmill.runs.options import RunOptions

__all__ = ["Run", "RunOptions", "run", "run_sync"]


async def run(config: PipelineConfig, options: RunOptions | None = None) -> dict[str, Any]:
    """Run a pipeline to the end and return its summary (also written to summary.json)."""
    the_run = Run(config, options or RunOptions())
    if the_run.options.on_start:
        the_run.options.on_start(the_run)
    return await the_run.execute()


def run_sync(config: PipelineConfig, options: RunOptions | None = None) -> dict[str, Any]:
    """`run` for synchronous callers; inside a running loop (a notebook) it runs on a thread."""
    from gristmill.runs.event_loop import new_event_loop

    def go() -> dict[str, Any]:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(run(config, options))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return go()
    result: dict[str, Any] = {}
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.update(go())
        except BaseException as exc:  # handed to the calling thread, re-raised there
            error.append(exc)

    thread = threading.Thread(target=target, name="gristmill-run")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result
