"""What the review page knows about a run: a compact index of its records, read lazily.

The index keeps a few fields per record (id, byte offset, skill, type, judge verdict, a
seeded rank), never the texts; a record's full text is read from `output.jsonl` at its offset
when it is shown. Files are followed as they grow, so the page works beside a running pipeline."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any, Iterator

import orjson

from gristmill.flywheel.review_pool import RecordMeta, RecordPool, rank_of

SEED_EXCERPT_CHARS = 1500
MAX_SEED_REJECTS = 20


def judge_fields(record: dict[str, Any]) -> tuple[bool | None, bool]:
    """(overall verdict, split verdicts) of a record; (None, False) when it has no judge."""
    judge = record.get("judge")
    if not isinstance(judge, dict) or not isinstance(judge.get("passed"), bool):
        return None, False
    criteria = judge.get("criteria") or {}
    verdicts = {bool(c.get("passed")) for c in criteria.values() if isinstance(c, dict)}
    return judge["passed"], len(verdicts) == 2


class JsonlTail:
    """New complete lines of a growing JSONL file, with their byte offsets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.malformed = 0

    def read_new(self) -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self.offset:
            return
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # a line still being written: read it next time
                at, self.offset = self.offset, self.offset + len(line)
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError:
                    self.malformed += 1
                    continue
                if isinstance(value, dict) and isinstance(value.get("id"), str):
                    yield at, value
                else:
                    self.malformed += 1


def read_line_at(path: Path, offset: int) -> dict[str, Any]:
    with path.open("rb") as fh:
        fh.seek(offset)
        return orjson.loads(fh.readline())


class RecordIndex:
    """The records of a run (`output.jsonl` by default), their seeds and rejects."""

    def __init__(self, run_dir: Path, records: Path | None = None, seed: int = 0) -> None:
        self.run_dir = run_dir
        self.records_path = records or run_dir / "output.jsonl"
        self.seed = seed
        self.pool = RecordPool()
        self._records = JsonlTail(self.records_path)
        self._rejects = JsonlTail(run_dir / "rejects.jsonl")
        self._rejects_by_seed: dict[str, list[int]] = {}
        self._dataset_mtime: float | None = None
        self.refresh()

    def refresh(self) -> None:
        """Take in records and rejects appended since the last call (a stat when none were)."""
        new = []
        for offset, record in self._records.read_new():
            judge, split = judge_fields(record)
            new.append(RecordMeta(record["id"], offset, rank_of(record["id"], self.seed),
                                  sys.intern(str(record.get("skill") or "")),  # one copy each
                                  sys.intern(str(record.get("type") or "")), judge, split))
        self.pool.add(new)
        for offset, reject in self._rejects.read_new():
            seed_id = reject.get("seed_id")
            if isinstance(seed_id, str):
                self._rejects_by_seed.setdefault(seed_id, []).append(offset)
        self._refresh_dataset(bool(new))

    def _refresh_dataset(self, records_added: bool) -> None:
        path = self.run_dir / "dataset.jsonl"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._dataset_mtime and not records_added:
            return
        self._dataset_mtime = mtime
        kept = {record["id"] for _, record in JsonlTail(path).read_new()}
        for meta in self.pool.metas:
            meta.in_dataset = meta.id in kept

    def record(self, meta: RecordMeta) -> dict[str, Any]:
        return read_line_at(self.records_path, meta.offset)

    def seed_excerpt(self, seed_id: str | None) -> dict[str, Any] | None:
        if not seed_id:
            return None
        db = self.run_dir / "run.sqlite"
        if not db.exists():
            return None
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT source, text FROM seeds WHERE id = ?",
                               (seed_id,)).fetchone()
        except sqlite3.OperationalError:  # a run from before seeds were kept
            row = None
        finally:
            conn.close()
        if row is None:
            return None
        source, text = row
        return {"id": seed_id, "source": source, "chars": len(text),
                "excerpt": text[:SEED_EXCERPT_CHARS]}

    def seed_rejects(self, seed_id: str | None) -> list[dict[str, Any]]:
        """Work from the same seed that failed (the first few): stage, validator, reason."""
        shown = []
        for offset in self._rejects_by_seed.get(seed_id or "", [])[:MAX_SEED_REJECTS]:
            reject = read_line_at(self._rejects.path, offset)
            shown.append({key: reject.get(key) for key in
                          ("stage", "validator", "error", "reason", "attempt")})
        return shown
