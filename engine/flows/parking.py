"""Items set aside while their request waits in a batch file: on disk, not in a worker.

A batch answers in minutes to hours; a worker (and its item: the seed's text and every
output so far) held per waiting request would make memory grow with the input. A parked item
is written here under its request key and the worker moves on; when the key's answer has
arrived its rows are handed back by row id, and the item is read again only when a worker
takes it up (its stage then replays it: the calls before are answered from the cache).

The file is scratch for one session: a crash loses nothing, since an item set aside is not
done and a resume replays its seed. So it runs in one transaction that is never committed,
without a journal or syncs, its page cache bounded by SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from gristmill.flows.items import Item

SCHEMA = """
CREATE TABLE parked (key BLOB NOT NULL, stage INTEGER NOT NULL, variant INTEGER NOT NULL,
                     item BLOB NOT NULL);
CREATE INDEX parked_by_key ON parked (key);
"""


class Ticket(int):
    """The row id of a parked item, in a stage's channel where the item would be."""

    __slots__ = ()


class ParkingLot:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # an earlier session's: its items are replayed anew
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                               "PRAGMA cache_size=-4096;" + SCHEMA)
        self._db.execute("BEGIN")
        self.parked = 0  # rows in the lot now

    def park(self, key: bytes, stage: int, item: Item, variant: int) -> None:
        self._db.execute("INSERT INTO parked VALUES (?, ?, ?, ?)", (key, stage, variant, orjson.dumps(
            (item.id, item.seed_id, item.values, item.lineage, item.usage, item.model))))
        self.parked += 1

    def answered(self, key: bytes) -> list[tuple[int, Ticket, int]]:
        """The (stage, ticket, variant) of each item parked under `key`."""
        return [(stage, Ticket(rowid), variant) for rowid, stage, variant in self._db.execute(
            "SELECT rowid, stage, variant FROM parked WHERE key = ?", (key,))]

    def take(self, ticket: Ticket) -> Item:
        """The parked item, out of the lot."""
        (blob,), = self._db.execute("SELECT item FROM parked WHERE rowid = ?", (ticket,))
        self._db.execute("DELETE FROM parked WHERE rowid = ?", (ticket,))
        self.parked -= 1
        item_id, seed_id, values, lineage, usage, model = orjson.loads(blob)
        return Item(item_id, seed_id, values, [tuple(step) for step in lineage], usage, model)

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)
