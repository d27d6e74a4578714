"""Append-only JSONL files of a run (output, rejects): repaired and indexed on open.

A `kill -9` can leave a torn last line; opening the file truncates it back to the last complete
line. The ids already in the file are loaded (as 64-bit keys in a `DigestSet`, a compact
off-heap set) so a resumed run skips them: nothing is written twice."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import orjson

from gristmill.dataset.digest_set import DigestSet

log = logging.getLogger("gristmill.sink")
_PREFIX = b'{"id":"'


def id_key(record_id: str) -> int:
    """A 64-bit set key for an id: the id itself when it is 16 hex digits (gristmill's)."""
    if len(record_id) == 16:
        try:
            value = int(record_id, 16)
        except ValueError:
            value = -1
        if value >= 0:  # "-abc..." parses too, and would not fit 64 unsigned bits
            return value
    return int.from_bytes(hashlib.blake2b(record_id.encode(), digest_size=8).digest(), "big")


def line_id(line: bytes) -> str | None:
    if line.startswith(_PREFIX) and line[23:24] == b'"':
        return line[7:23].decode()
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value.get("id") if isinstance(value, dict) else None


def repair_torn_tail(path: Path) -> int:
    """Cut a last line that has no newline (a write the process did not finish). Returns the
    number of bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        block = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            chunk = fh.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return 0
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
        fh.truncate(keep)
    log.warning("%s: removed a torn last line (%d bytes)", path, size - keep)
    return size - keep


def read_ids(path: Path) -> DigestSet:
    ids = DigestSet()
    if not path.exists():
        return ids
    with path.open("rb") as fh:
        for line in fh:
            record_id = line_id(line)
            if record_id is not None:
                ids.add_digest(id_key(record_id))
    return ids


class JsonlFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.repaired = repair_torn_tail(path)
        self.ids = read_ids(path)
        self._file = path.open("ab")

    def write_lines(self, lines: list[bytes]) -> None:
        self._file.write(b"".join(lines))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
