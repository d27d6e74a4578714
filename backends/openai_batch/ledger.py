"""The run's book of batch files (RUN/batches/ledger.sqlite), written before each step it
records could be lost: the intent (a file's name and its request keys) before the upload,
the file id as soon as it exists, the batch id as soon as it exists, `done` once its answers
were handed over. A crash anywhere leaves a book from which the next session finds what was
uploaded or created (by the deterministic file name, by the batch's metadata) instead of
submitting it again, and which keys already belong to a batch, so no key is in two.

Writes are few (a handful per file of up to 50,000 requests) and synchronous
(`synchronous=FULL`), run in a thread; the event loop never waits on the disk."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, requests INTEGER NOT NULL,
    file_id TEXT, batch_id TEXT, status TEXT, counts TEXT, done INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (key BLOB NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (key, seq));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(slots=True)
class FileEntry:
    seq: int
    name: str
    requests: int
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None  # the provider's last status
    counts: str | None = None  # and its request counts, as "completed=9,failed=1,total=10"


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._lock = asyncio.Lock()  # one write at a time from the loop's side

    def close(self) -> None:
        self._conn.close()

    async def _write(self, *statements: tuple[str, object]) -> None:
        def write() -> None:
            with self._conn:  # one transaction
                self._conn.execute("BEGIN")
                for sql, params in statements:
                    if isinstance(params, list):
                        self._conn.executemany(sql, params)
                    else:
                        self._conn.execute(sql, params)
        async with self._lock:  # held until the thread's write is over, even on a cancel
            job = asyncio.ensure_future(asyncio.to_thread(write))
            try:
                await asyncio.shield(job)
            except asyncio.CancelledError:
                await asyncio.wait([job])
                raise

    # -- reads (at start) -----------------------------------------------------------------
    def token(self) -> str:
        """This run's mark in file names and batch metadata, made once: two runs never
        mistake each other's files or batches for their own."""
        with self._conn:
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('token', ?)",
                               (secrets.token_hex(6),))
        return self._conn.execute("SELECT value FROM meta WHERE name = 'token'").fetchone()[0]

    def next_seq(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) FROM files").fetchone()
        return (row[0] or 0) + 1

    def open_files(self) -> list[tuple[FileEntry, list[bytes]]]:
        """Files not done, with their keys: a session resumes each where it stopped."""
        entries = [FileEntry(*row) for row in self._conn.execute(
            "SELECT seq, name, requests, file_id, batch_id, status, counts FROM files "
            "WHERE done = 0 ORDER BY seq")]
        return [(e, [k for (k,) in self._conn.execute(
            "SELECT key FROM members WHERE seq = ?", (e.seq,))]) for e in entries]

    # -- writes ---------------------------------------------------------------------------
    async def intend(self, entry: FileEntry, keys: list[bytes]) -> None:
        await self._write(
            ("INSERT INTO files (seq, name, requests, updated) VALUES (?, ?, ?, ?)",
             (entry.seq, entry.name, entry.requests, time.time())),
            ("INSERT OR IGNORE INTO members (key, seq) VALUES (?, ?)",
             [(k, entry.seq) for k in keys]))

    async def uploaded(self, entry: FileEntry, file_id: str) -> None:
        entry.file_id = file_id
        await self._write(("UPDATE files SET file_id = ?, updated = ? WHERE seq = ?",
                           (file_id, time.time(), entry.seq)))

    async def created(self, entry: FileEntry, batch_id: str, status: str) -> None:
        entry.batch_id, entry.status = batch_id, status
        await self._write(("UPDATE files SET batch_id = ?, status = ?, updated = ? "
                           "WHERE seq = ?", (batch_id, status, time.time(), entry.seq)))

    async def status(self, entry: FileEntry, status: str, counts: dict[str, int]) -> None:
        """The provider's status and request counts (written when either changed)."""
        text = ",".join(f"{k}={v}" for k, v in sorted(counts.items()))
        if (status, text) != (entry.status, entry.counts):
            entry.status, entry.counts = status, text
            await self._write(("UPDATE files SET status = ?, counts = ?, updated = ? "
                               "WHERE seq = ?", (status, text, time.time(), entry.seq)))

    async def done(self, entry: FileEntry) -> None:
        await self._write(("UPDATE files SET done = 1, updated = ? WHERE seq = ?",
                           (time.time(), entry.seq)))


def read_files(run_dir: Path) -> dict[str, list[dict[str, object]]]:
    """Each batch backend's files in a run directory (RUN/batches/<backend>/), read only."""
    cols = ("seq", "name", "requests", "file_id", "batch_id", "status", "counts", "done")
    out = {}
    for path in sorted((run_dir / "batches").glob("*/ledger.sqlite")):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            out[path.parent.name] = [dict(zip(cols, row)) for row in conn.execute(
                f"SELECT {', '.join(cols)} FROM files ORDER BY seq")]
        finally:
            conn.close()
    return out
