"""Reading and writing a run directory's files: the one home of the atomic writer and the
JSON and JSONL readers every command uses on a run (running, killed or finished)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import orjson


@contextmanager
def atomic_path(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """A path beside `path` to write instead; renamed over `path` when the block ends, removed
    if it fails: readers see the old file or the new one, never half of one. `durable`: the
    new file is on disk (fsync) before it replaces the old."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        if durable:
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None if it is missing or damaged."""
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, in order; a torn line (a killed run's last) and
    anything that is not an object are skipped; a missing file has none."""
    if not path.is_file():
        return
    with path.open("rb") as fh:
        for line in fh:
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict):
                yield value
