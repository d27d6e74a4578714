"""Append-only JSONL sinks, written with orjson in batches (one `write` per batch)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson


class JsonlSink:
    def __init__(self, path: Path, batch_size: int = 512, flush_interval_s: float = 1.0) -> None:
        self.path = path
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.count = 0
        self._buffer: list[bytes] = []
        self._last_flush = time.monotonic()
        self._file = path.open("ab")

    def write(self, record: dict[str, Any]) -> None:
        self._buffer.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self.count += 1
        if len(self._buffer) >= self.batch_size or \
                time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._file.write(b"".join(self._buffer))
            self._buffer.clear()
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> "JsonlSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
