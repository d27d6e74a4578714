"""Child processes that do not outlive gristmill. A server started by gristmill is stopped on
exit, errors and signals; if gristmill itself is killed (kill -9, the OOM killer), Linux's
parent-death signal stops the server too, instead of leaving it holding a GPU or gigabytes
of memory. The command runs through a small launcher that asks for the signal and then
execs the real command (the request survives exec)."""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
LAUNCHER = f"""
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, {int(signal.SIGTERM)}) != 0:
    sys.exit("die_with_parent: prctl failed: " + os.strerror(ctypes.get_errno()))
if os.getppid() != int(sys.argv[1]):  # the parent died before the request took effect
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def die_with_parent(argv: list[str], python: str = sys.executable) -> list[str]:
    """`argv` run so that it gets SIGTERM when this process dies (Linux; elsewhere as is).
    The signal follows the thread that starts the child: start it from the event loop's."""
    if not sys.platform.startswith("linux"):
        return argv
    return [python, "-c", LAUNCHER, str(os.getpid()), *argv]
