"""Ctrl-C and SIGTERM: the first stops admitting seeds and lets started work finish; the
second cancels the run at once."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gristmill.runs.runner import Run

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class GracefulStop:
    def __init__(self) -> None:
        self.signals: list[signal.Signals] = []
        self._run: "Run | None" = None
        self._task: asyncio.Task | None = None

    @property
    def run_dir(self) -> str | None:
        return str(self._run.dir.path) if self._run is not None else None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signals[0], 1) if self.signals else 0

    def install(self, run: "Run") -> None:
        self._run = run
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in EXIT_CODES:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.signals.append(sig)
        if len(self.signals) == 1 and self._run is not None:
            print(f"\n{sig.name}: admitting no more seeds, finishing started work "
                  "(signal again to abort)", file=sys.stderr)
            self._run.stop_admitting(sig.name.lower())
            grace = self._run.config.grace_s
            asyncio.get_running_loop().call_later(grace, self._abort, f"grace period of {grace}s over")
        else:
            self._abort(f"{sig.name} again")

    def _abort(self, why: str) -> None:
        if self._task is not None and not self._task.done():
            print(f"\n{why}: aborting", file=sys.stderr)
            self._task.cancel()
