"""The label store in a real SQLite file: a relabel is a new row (history stays, the newest is
in force) per (record, criterion), and stores written before a column existed open in place."""

from __future__ import annotations

import sqlite3

from gristmill.flywheel.labels import LabelStore


def test_a_relabel_keeps_the_history_and_the_newest_wins(tmp_path):
    with LabelStore(tmp_path / "run.sqlite") as store:
        store.add("r1", True, "fine", at=10.0, reviewer="ana")
        store.add("r1", False, "invents a date", criterion="faithful", at=11.0)
        store.add("r2", True, at=12.0)
        store.add("r1", False, "on second look, no", at=13.0, reviewer="ben")
        store.add("r1", True, criterion="faithful", at=14.0)
        store.add("r1", False, criterion="complete", at=15.0)

    with LabelStore(tmp_path / "run.sqlite") as store:  # stored, not kept in memory
        history = store.history()
        assert [(lab.record_id, lab.criterion, lab.passed, lab.labeled_at) for lab in history] == [
            ("r1", "", True, 10.0), ("r1", "faithful", False, 11.0), ("r2", "", True, 12.0),
            ("r1", "", False, 13.0), ("r1", "faithful", True, 14.0), ("r1", "complete", False, 15.0)]
        assert [lab.labeled_at for lab in store.history("r1")] == [10.0, 11.0, 13.0, 14.0, 15.0]
        overall = store.latest()
        assert {k: (v.passed, v.critique, v.reviewer) for k, v in overall.items()} == {
            "r1": (False, "on second look, no", "ben"), "r2": (True, "", "")}
        assert {k: v.passed for k, v in store.latest("faithful").items()} == {"r1": True}
        assert store.criteria() == ["complete", "faithful"]
        assert [(lab.record_id, lab.criterion, lab.passed) for lab in store.current()] == [
            ("r2", "", True), ("r1", "", False), ("r1", "faithful", True),
            ("r1", "complete", False)]


def test_labels_at_the_same_time_keep_the_order_they_were_given(tmp_path):
    with LabelStore(tmp_path / "run.sqlite") as store:
        store.add("r1", True, at=5.0)
        store.add("r1", False, at=5.0)
        assert store.latest()["r1"].passed is False


def test_a_store_without_criterion_and_reviewer_columns_is_migrated_in_place(tmp_path):
    db = tmp_path / "run.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE labels (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                     "record_id TEXT NOT NULL, passed INTEGER NOT NULL, "
                     "critique TEXT NOT NULL DEFAULT '', labeled_at REAL NOT NULL)")
        conn.executemany("INSERT INTO labels (record_id, passed, critique, labeled_at) "
                         "VALUES (?, ?, ?, ?)",
                         [("r1", 0, "vague", 1.0), ("r2", 1, "", 2.0), ("r1", 1, "ok now", 3.0)])
        conn.execute("CREATE TABLE answers (key BLOB PRIMARY KEY, value BLOB)")  # left alone
    conn.close()

    with LabelStore(db) as store:
        assert [(lab.record_id, lab.criterion, lab.passed, lab.critique, lab.reviewer)
                for lab in store.history()] == [("r1", "", False, "vague", ""),
                                                 ("r2", "", True, "", ""),
                                                 ("r1", "", True, "ok now", "")]
        assert {k: v.passed for k, v in store.latest().items()} == {"r1": True, "r2": True}
        store.add("r2", False, criterion="faithful", reviewer="ana", at=4.0)
    with LabelStore(db) as store:  # opening again changes nothing more
        assert [(lab.criterion, lab.reviewer) for lab in store.history("r2")] == [
            ("", ""), ("faithful", "ana")]
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(labels)")]
        assert columns == ["seq", "record_id", "passed", "critique", "labeled_at", "criterion",
                           "reviewer"]
        assert conn.execute("SELECT count(*) FROM answers").fetchone() == (0,)
    conn.close()


def test_a_store_in_todays_layout_opens_unchanged(tmp_path):
    """The layout `run.sqlite` has had since labels were first stored."""
    db = tmp_path / "run.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE labels (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                record_id TEXT NOT NULL, criterion TEXT NOT NULL DEFAULT '',
                passed INTEGER NOT NULL, critique TEXT NOT NULL DEFAULT '',
                reviewer TEXT NOT NULL DEFAULT '', labeled_at REAL NOT NULL);
            CREATE INDEX labels_record ON labels (record_id, criterion, seq);
            INSERT INTO labels (record_id, passed, critique, reviewer, labeled_at)
                VALUES ('r1', 0, 'too long', 'ana', 1.0);""")
    conn.close()
    with LabelStore(db) as store:
        [label] = store.history()
        assert (label.record_id, label.criterion, label.passed, label.critique,
                label.reviewer) == ("r1", "", False, "too long", "ana")
