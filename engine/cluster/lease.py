"""One live writer per shard: an exclusive lock on RUN/shards/<k>/lease, held while the shard's
engine runs. A worker restarted while a stale one still runs (a node cut off, not dead) finds
the lock taken and fails instead of writing beside it; the kernel drops the lock when its
holder dies (on NFS, once the server has seen the client go: the lease time of the mount)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class ShardBusy(RuntimeError):
    """Another live worker holds this shard."""


class Lease:
    def __init__(self, shard_dir: Path) -> None:
        self.path = shard_dir / "lease"
        self._fd: int | None = None

    def __enter__(self) -> "Lease":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ShardBusy(f"{self.path.parent} is held by another live worker") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.uname().nodename} {os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None
