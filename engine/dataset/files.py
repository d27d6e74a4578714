"""Reading and writing a run directory's files: the one home of the atomic writer and the
JSON and JSONL readers every command uses on a run (running, killed or finished)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import orjson


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one (write, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
