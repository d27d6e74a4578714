"""Waiting on events: for one with a time limit, or for work unless a run ends first."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Awaitable


async def wait_for_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until `event` is set or `timeout_s` passes (None: no limit); True if it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()


async def unless_done(work: Awaitable[object], done: asyncio.Event) -> bool:
    """Await `work` unless `done` is set first (then `work` is cancelled and has cleaned up).
    True if the work ended; what it raised is raised."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(done.wait())
    try:
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        task.cancel()  # no-op if it ended
        await asyncio.gather(stop, task, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()
    return True
