"""The run's durable store: one SQLite database (WAL) and the JSONL sinks, written by ONE
writer thread in a fixed order.

Everything durable goes through `Store.put_answer` / `Store.append`, which only queue work.
The writer thread drains the queue in batches and, per batch, first commits the answers to
SQLite (synchronous=FULL: on disk when the commit returns), then appends the JSONL lines. A
record is always queued after the answers it was derived from, so on disk no record exists
whose answer is not committed: `kill -9` at any moment leaves a state that resumes cleanly.

The event loop never waits for the disk: reads use their own connection (WAL readers do not
block the writer), and answers not yet committed are served from a small pending map."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from gristmill.dataset.digest_set import DigestSet
from gristmill.dataset.sink import JsonlFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (key BLOB PRIMARY KEY, value BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seeds (id TEXT PRIMARY KEY, source TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spend (backend TEXT NOT NULL, model TEXT NOT NULL, cost_usd REAL,
    prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, requests INTEGER NOT NULL,
    PRIMARY KEY (backend, model));
"""
# What answers cost, summed per (backend, model) in the writer's transaction. cost_usd stays
# NULL while a model is unpriced (a cost is never invented), and adds up once one is priced.
ADD_SPEND = """
INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (backend, model) DO UPDATE SET
    cost_usd = CASE WHEN cost_usd IS NULL AND excluded.cost_usd IS NULL THEN NULL
                    ELSE COALESCE(cost_usd, 0) + COALESCE(excluded.cost_usd, 0) END,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    cached_tokens = cached_tokens + excluded.cached_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    requests = requests + excluded.requests
"""
# (backend, model, cost_usd or None, prompt, cached prompt, completion tokens, requests)
SpendRow = tuple[str, str, "float | None", int, int, int, int]
_STOP = object()


class KeyFilter:
    """A Bloom filter of answer keys (16-byte digests, so their bytes are already uniform):
    "no" is certain, "maybe" asks the database. 4 MiB, whatever the run's size: about one
    false "maybe" in 6,000 keys at 1M answers, one in 50 at 4M."""

    BITS = 1 << 25

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS // 8)

    def _positions(self, key: bytes) -> tuple[int, ...]:
        low, high = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:16], "little")
        mask = self.BITS - 1
        return (low & mask, high & mask, (low >> 32) & mask, (high >> 32) & mask)

    def add(self, key: bytes) -> None:
        bits = self.bits
        for at in self._positions(key):
            bits[at >> 3] |= 1 << (at & 7)

    def __contains__(self, key: bytes) -> bool:
        bits = self.bits
        return all(bits[at >> 3] & (1 << (at & 7)) for at in self._positions(key))


class Store:
    def __init__(self, db_path: Path, sinks: dict[str, Path], *,
                 commit_interval_s: float = 0.05, wal: bool = True) -> None:
        self.db_path = db_path
        # WAL needs memory shared by every process that opens the file, which a network file
        # system cannot give: on one (a cluster's run directory) a rollback journal, truncated
        # rather than deleted after each commit (benchmarks/store_journal.py measures both)
        self.journal = "WAL" if wal else "TRUNCATE"
        self.commit_interval_s = commit_interval_s
        self.files = {name: JsonlFile(path) for name, path in sinks.items()}
        self._reader = self._connect()
        self._reader.executescript(SCHEMA)
        # A fresh database holds only the answers put here: a filter of their keys answers
        # most lookups (every miss of a new run) without a query. A resumed run asks SQLite.
        empty = self._reader.execute("SELECT 1 FROM answers LIMIT 1").fetchone() is None
        self._known: KeyFilter | None = KeyFilter() if empty else None
        self._pending: dict[bytes, bytes] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._hurry = threading.Event()  # a flush or close is waiting: commit now
        self._error: BaseException | None = None
        self.commits = 0
        self._last_commit = 0.0
        self._thread = threading.Thread(target=self._write_loop, name="gristmill-store",
                                        daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None,
                               timeout=30.0)  # without WAL a read waits out a commit
        conn.execute(f"PRAGMA journal_mode={self.journal}")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    # -- the event loop's side ------------------------------------------------------------
    def get_answer(self, key: bytes) -> bytes | None:
        value = self._pending.get(key)
        if value is not None:
            return value
        if self._known is not None and key not in self._known:
            return None
        row = self._reader.execute("SELECT value FROM answers WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def put_answer(self, key: bytes, value: bytes, spent: SpendRow | None = None) -> None:
        """Queue an answer; `spent`, what it cost, is committed with it: a crash keeps both or
        neither, so the persisted spend is that of the answers a resume replays for free."""
        self._check()
        if self._known is not None:
            self._known.add(key)
        self._pending[key] = value
        self._queue.put(("answer", key, value, spent))

    def add_spend(self, spent: SpendRow) -> None:
        """What an answer not kept in the cache (--no-cache) cost."""
        self._check()
        self._queue.put(("spend", spent))

    def spend(self) -> list[SpendRow]:
        """What every answer committed so far cost, by backend and model (earlier sessions
        included)."""
        return self._reader.execute("SELECT * FROM spend").fetchall()

    def put_seed(self, seed_id: str, source: str, text: str) -> None:
        self._queue.put(("seed", seed_id, source, text))

    def append(self, sink: str, record: dict[str, Any]) -> None:
        self._check()
        self._queue.put(("line", sink, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)))

    def written(self, sink: str) -> DigestSet:
        return self.files[sink].ids

    async def flush(self) -> None:
        """Wait until everything queued so far is on disk."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.put(("barrier", loop, done))
        self._hurry.set()
        await done
        self._check()

    def close(self) -> None:
        """Write what is queued, then stop the writer (blocking: call at the very end)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._hurry.set()
            self._thread.join()
        self._reader.close()
        for file in self.files.values():
            file.close()
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError("the run store's writer failed") from self._error

    # -- the writer thread ----------------------------------------------------------------
    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                batch = self._next_batch()
                stop = batch and batch[-1] is _STOP
                self._write(conn, [op for op in batch if op is not _STOP])
                if stop:
                    return
        except BaseException as exc:  # surfaced to the loop by _check(); the run then stops
            self._error = exc
            self._release_waiters()
        finally:
            conn.close()

    def _release_waiters(self) -> None:
        """After a failure: answer every flush() so nobody waits forever, until close()."""
        while (op := self._queue.get()) is not _STOP:
            if op[0] == "barrier":
                op[1].call_soon_threadsafe(_resolve, op[2])

    def _next_batch(self) -> list[Any]:
        """Wait for work, let more gather for the rest of the commit interval (asleep, so the
        event loop keeps the GIL) unless a flush or close is waiting, then take everything
        queued: one commit per batch."""
        batch = [self._queue.get()]
        rest = self._last_commit + self.commit_interval_s - time.monotonic()
        if rest > 0:
            self._hurry.wait(rest)
        self._hurry.clear()  # before the drain: a later flush's barrier sets it again
        while batch[-1] is not _STOP:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._last_commit = time.monotonic()
        return batch

    def _write(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        answers = [(op[1], op[2], time.time()) for op in batch if op[0] == "answer"]
        seeds = [op[1:] for op in batch if op[0] == "seed"]
        spent = [op[3] if op[0] == "answer" else op[1] for op in batch
                 if (op[0] == "answer" and op[3] is not None) or op[0] == "spend"]
        if answers or seeds or spent:
            conn.execute("BEGIN")
            conn.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?, ?)", answers)
            conn.executemany("INSERT OR IGNORE INTO seeds VALUES (?, ?, ?)", seeds)
            conn.executemany(ADD_SPEND, spent)
            conn.execute("COMMIT")
            self.commits += 1
            for key, _, _ in answers:
                self._pending.pop(key, None)
        lines: dict[str, list[bytes]] = {}
        for op in batch:
            if op[0] == "line":
                lines.setdefault(op[1], []).append(op[2])
        for sink, chunk in lines.items():
            self.files[sink].write_lines(chunk)
        for op in batch:
            if op[0] == "barrier":
                op[1].call_soon_threadsafe(_resolve, op[2])


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
