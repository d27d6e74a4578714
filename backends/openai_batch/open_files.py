"""The files requests are joining in `mode: batch`, one per model (a provider refuses a file
with two), each line written to disk as its request joins. A file is sealed when it is full
(`max_requests`, `max_bytes`), `seal_after_s` after its first request, once nothing has joined
it for `idle_seal_s`, or at once on `flush`; a sealed file is handed to `sealed`, which runs
it (the backend)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Callable

from gristmill.config.backend import BatchConfig
from gristmill.protocol import Request

from gristmill.backends.openai_batch.ledger import FileEntry
from gristmill.backends.openai_http.backend import build_body


def line_of(key: bytes, url: str, request: Request) -> bytes:
    body = build_body(replace(request, stream=False) if request.stream else request)
    return b'{"custom_id":"%s","method":"POST","url":"%s","body":%s}\n' % (
        key.hex().encode(), url.encode(), body)


class OpenFile:
    """The file one model's requests are joining now, written as they join."""

    __slots__ = ("entry", "keys", "out", "size", "opened", "last", "timer")

    def __init__(self, entry: FileEntry, path: Path, now: float) -> None:
        self.entry = entry
        self.keys: list[bytes] = []
        self.out = path.open("wb")
        self.size = 0
        self.opened = self.last = now
        self.timer: asyncio.TimerHandle | None = None

    def add(self, key: bytes, line: bytes, now: float) -> None:
        self.keys.append(key)
        self.out.write(line)
        self.size += len(line)
        self.last = now

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.out.close()


class OpenFiles:
    """The open files of one backend, by model; one timer per open file, not per request."""

    def __init__(self, limits: BatchConfig, directory: Path, backend: str,
                 sealed: Callable[[OpenFile], None]) -> None:
        self.limits, self.dir, self.backend = limits, directory, backend
        self._sealed = sealed
        self._open: dict[str, OpenFile] = {}
        self._prefix = f"gristmill--{backend}-"
        self._next_seq = 1
        self._closed = False

    def start(self, token: str, next_seq: int) -> None:
        """Files are named after this run's `token` and numbered on from `next_seq`."""
        self._prefix = f"gristmill-{token}-{self.backend}-"
        self._next_seq = next_seq

    def remove_strays(self, open_names: set[str]) -> None:
        """Files a crash left before they were sealed: no intent refers to them."""
        for path in self.dir.glob(f"{self._prefix}*.jsonl"):
            if path.name not in open_names:
                path.unlink()

    def join(self, key: bytes, line: bytes, model: str) -> None:
        """Add a line to the open file of its model."""
        limits, loop = self.limits, asyncio.get_running_loop()
        now = loop.time()
        opened = self._open.get(model)
        if opened is not None and opened.size + len(line) > limits.max_bytes:
            self._seal(model)
            opened = None
        if opened is None:
            seq, self._next_seq = self._next_seq, self._next_seq + 1
            entry = FileEntry(seq, f"{self._prefix}{seq:06d}.jsonl", 0)
            opened = self._open[model] = OpenFile(entry, self.dir / entry.name, now)
            opened.timer = loop.call_at(now + min(limits.idle_seal_s, limits.seal_after_s),
                                        self._on_timer, model)
        opened.add(key, line, now)
        if len(opened.keys) >= limits.max_requests:
            self._seal(model)

    def flush(self) -> None:
        """Seal every open file now."""
        for model in list(self._open):
            self._seal(model)

    def _on_timer(self, model: str) -> None:
        """Seal once the file is old enough or idle long enough; otherwise look again then."""
        opened, limits = self._open.get(model), self.limits
        if opened is None:
            return
        due = min(opened.opened + limits.seal_after_s, opened.last + limits.idle_seal_s)
        loop = asyncio.get_running_loop()
        if loop.time() >= due - 1e-6:
            self._seal(model)
        else:
            opened.timer = loop.call_at(due, self._on_timer, model)

    def _seal(self, model: str) -> None:
        if self._closed:  # the run has ended: nothing more is sent
            return
        opened = self._open.pop(model)
        opened.close()
        opened.entry.requests = len(opened.keys)
        self._sealed(opened)

    def close(self) -> None:
        """The run has ended: nothing is sealed from now on (the files stay on disk until
        `discard`)."""
        self._closed = True
        for opened in self._open.values():
            opened.close()

    def discard(self) -> None:
        """Close and remove the files never sealed: no intent refers to them."""
        for opened in self._open.values():
            opened.close()
            (self.dir / opened.entry.name).unlink(missing_ok=True)
        self._open.clear()
