"""A child started through `die_with_parent` ends when its parent is killed (kill -9), and
runs as the same process (the launcher execs it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gristmill.backends.vllm.die_with_parent import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
PARENT = """
import asyncio, sys
from gristmill.backends.vllm.die_with_parent import die_with_parent

async def main():
    child = await asyncio.create_subprocess_exec(*die_with_parent(sys.argv[1:]),
                                                 stdout=asyncio.subprocess.DEVNULL,
                                                 start_new_session=True)
    print(child.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the parent-death signal is Linux's")


def gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_the_child_ends_when_its_parent_is_killed(kill):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, "sleep", "600"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ})
    try:
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while psutil.Process(pid).name() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.05)  # the launcher execs into the command: same process
        assert psutil.Process(pid).cmdline() == ["sleep", "600"]
        parent.send_signal(kill)
        parent.wait(timeout=10)
        assert gone(pid)
    finally:
        parent.kill()
        parent.communicate()
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.kill(pid, signal.SIGKILL)


def test_a_child_whose_parent_is_already_gone_does_not_start(tmp_path):
    """The launcher checks its parent after asking for the signal: one that died before
    (here: a pid that is not the parent) means the command never runs."""
    marker = tmp_path / "ran"
    argv = die_with_parent(["touch", str(marker)])
    argv[3] = "1"  # the parent pid the launcher expects
    assert subprocess.run(argv).returncode == 1
    assert not marker.exists()
