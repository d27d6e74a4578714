"""Named crash points: where a test asks for it (GRISTMILL_CRASH_AT=<name>), the process dies
here as kill -9 would, inside a narrow window of a batch file's bookkeeping."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "GRISTMILL_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
