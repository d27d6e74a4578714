"""Event loop choice: uvloop when installed (the default), asyncio's otherwise."""

from __future__ import annotations

import asyncio


def new_event_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
