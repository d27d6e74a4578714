"""Human labels of a run's records, kept in the run's SQLite database (`run.sqlite`).

Every label is a new row with its timestamp: a record relabelled later keeps its history
(preferences drift, and alignment tracks agreement over label time). The label in force for a
(record, criterion) pair is the newest. `criterion` is "" for the overall verdict (null in the
review API and in `gristmill labels export`).

A store from before a column existed is brought up to date when opened: the missing column is
added with its default, so older rows read as overall labels by no named reviewer.

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
"""
# (every SQLite index ends in the rowid, which `seq` names: entries are in label order)
INDEX = "CREATE INDEX IF NOT EXISTS labels_record ON labels (record_id, criterion)"
# columns a store written before them may lack, with what older rows get
ADDED_COLUMNS = {"criterion": "TEXT NOT NULL DEFAULT ''", "critique": "TEXT NOT NULL DEFAULT ''",
                 "reviewer": "TEXT NOT NULL DEFAULT ''"}
COLUMNS = "record_id, criterion, passed, critique, reviewer, labeled_at"


@dataclass(frozen=True, slots=True)
class Label:
    record_id: str
    criterion: str  # "" = the overall verdict
    passed: bool
    critique: str
    reviewer: str
    labeled_at: float  # Unix time


def in_force(history: list[Label]) -> dict[tuple[str, str], Label]:
    """The newest label per (record, criterion) of a history, in the order they were given."""
    current: dict[tuple[str, str], Label] = {}
    for label in history:
        current.pop((label.record_id, label.criterion), None)
        current[label.record_id, label.criterion] = label
    return current


class LabelStore:
    """Labels of one run. Safe beside a running pipeline: its own connection, WAL mode."""

    def __init__(self, db_path: Path) -> None:
        self._conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        self._migrate()
        self._conn.execute(INDEX)

    def _missing_columns(self) -> list[str]:
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(labels)")}
        return [name for name in ADDED_COLUMNS if name not in have]

    def _migrate(self) -> None:
        if not self._missing_columns():
            return
        with self._conn:  # commits, or rolls back on an error
            self._conn.execute("BEGIN IMMEDIATE")  # another process may be migrating it too
            for name in self._missing_columns():
                self._conn.execute(f"ALTER TABLE labels ADD COLUMN {name} {ADDED_COLUMNS[name]}")

    def add(self, record_id: str, passed: bool, critique: str = "", *, criterion: str = "",
            reviewer: str = "", at: float | None = None) -> Label:
        label = Label(record_id, criterion, bool(passed), critique, reviewer,
                      time.time() if at is None else at)
        self._conn.execute(
            f"INSERT INTO labels ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (label.record_id, label.criterion, int(label.passed), label.critique,
             label.reviewer, label.labeled_at))
        return label

    def history(self, record_id: str | None = None) -> list[Label]:
        """Every label ever given (of one record, if named), oldest first."""
        where, args = ("WHERE record_id = ? ", (record_id,)) if record_id is not None else ("", ())
        rows = self._conn.execute(
            f"SELECT {COLUMNS} FROM labels {where}ORDER BY labeled_at, rowid", args)
        return [Label(r, c, bool(p), t, w, a) for r, c, p, t, w, a in rows]

    def latest(self, criterion: str = "") -> dict[str, Label]:
        """The label in force per record for one criterion ("" = overall)."""
        current: dict[str, Label] = {}
        for label in self.history():
            if label.criterion == criterion:
                current[label.record_id] = label
        return current

    def current(self) -> list[Label]:
        """The label in force for every labelled (record, criterion) pair, oldest first."""
        return list(in_force(self.history()).values())

    def criteria(self) -> list[str]:
        """Names of the criteria that have labels, sorted."""
        rows = self._conn.execute("SELECT DISTINCT criterion FROM labels WHERE criterion != '' "
                                  "ORDER BY criterion")
        return [name for (name,) in rows]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
