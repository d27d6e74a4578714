"""Human labels of a run's records, kept in the run's SQLite database (`run.sqlite`).

Every label is a new row with its timestamp: a record relabelled later keeps its history
(preferences drift, and alignment tracks agreement over label time). The label in force for a
(record, criterion) pair is the newest. `criterion` is "" for the overall verdict.

A record's judge verdict, as the judge stage stores it on the record:
    record["judge"] = {"passed": bool, "version": "<judge config id>",
                       "criteria": {"<name>": {"passed": bool, "critique": "..."}}}
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL,
    criterion TEXT NOT NULL DEFAULT '',
    passed INTEGER NOT NULL,
    critique TEXT NOT NULL DEFAULT '',
    reviewer TEXT NOT NULL DEFAULT '',
    labeled_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_record ON labels (record_id, criterion, seq);
"""


@dataclass(frozen=True, slots=True)
class Label:
    record_id: str
    criterion: str  # "" = the overall verdict
    passed: bool
    critique: str
    reviewer: str
    labeled_at: float  # Unix time


class LabelStore:
    """Labels of one run. Safe beside a running pipeline: its own connection, WAL mode."""

    def __init__(self, db_path: Path) -> None:
        self._conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)

    def add(self, record_id: str, passed: bool, critique: str = "", *, criterion: str = "",
            reviewer: str = "", at: float | None = None) -> Label:
        label = Label(record_id, criterion, bool(passed), critique, reviewer,
                      time.time() if at is None else at)
        self._conn.execute(
            "INSERT INTO labels (record_id, criterion, passed, critique, reviewer, labeled_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (label.record_id, label.criterion, int(label.passed), label.critique,
             label.reviewer, label.labeled_at))
        return label

    def history(self) -> list[Label]:
        """Every label ever given, oldest first."""
        rows = self._conn.execute(
            "SELECT record_id, criterion, passed, critique, reviewer, labeled_at FROM labels "
            "ORDER BY labeled_at, seq")
        return [Label(r, c, bool(p), t, w, a) for r, c, p, t, w, a in rows]

    def latest(self, criterion: str = "") -> dict[str, Label]:
        """The label in force per record for one criterion ("" = overall)."""
        current: dict[str, Label] = {}
        for label in self.history():
            if label.criterion == criterion:
                current[label.record_id] = label
        return current

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
