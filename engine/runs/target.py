"""Stop at N good records (`target_records`): which records count, and which N make the dataset.

A record of seed k is final only once every seed before k is done (its records emitted, its
rejects written): until then an earlier seed may still add records that come before it. So
the count moves over the prefix of done seeds, in seed order (records of one seed by id), and
the N chosen are the first N a run without a target would have in seed order, whatever order
answers arrived in and however far the run overshot. With dedup on, each record is checked
as the prefix passes it, against the records before it in that order (an `OnlineDeduper`):
only a record that is not a duplicate counts, so "N kept" means N after dedup, and no record
after the N-th can take the place of one before it (as "the smallest id wins" would).

Work started before the count reached N still finishes and lands in output.jsonl (the durable
log: nothing paid for is thrown away); dataset.jsonl gets the N chosen, in seed order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import orjson

from gristmill.dataset.files import atomic_path, write_atomic
from gristmill.dataset.sink import line_id


class Dedup(Protocol):
    def check(self, text: str) -> bool: ...

    def stats(self) -> dict[str, Any]: ...


class Target:
    def __init__(self, n: int, dedup: Dedup | None = None,
                 text: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.n = n
        self.dedup, self.text = dedup, text  # text: what dedup compares (the instruction)
        self.chosen: list[str] = []  # ids of the records that count, in seed order (<= n)
        self._position: dict[str, int] = {}  # seed id -> place, for seeds not yet passed
        self._records: dict[int, list[tuple[str, str]]] = {}  # place -> (id, text) of a seed
        self._done: set[int] = set()  # places done, not yet passed
        self._next = 0  # the first place not yet passed

    @property
    def reached(self) -> bool:
        return len(self.chosen) >= self.n

    def admitted(self, seed_id: str, place: int) -> None:
        self._position[seed_id] = place

    def record(self, seed_id: str, record: dict[str, Any]) -> None:
        """A record of an admitted seed (written now or by an earlier session: both count)."""
        if self.reached:  # overshoot: in output.jsonl, never in the dataset
            return
        text = self.text(record) if self.dedup is not None and self.text else ""
        self._records.setdefault(self._position[seed_id], []).append((record["id"], text))

    def seed_done(self, seed_id: str) -> bool:
        """Seed `seed_id` has nothing left in flight; True once N records count."""
        if self.reached:
            return True
        self._done.add(self._position.pop(seed_id))
        while self._next in self._done and not self.reached:
            self._done.remove(self._next)
            for record_id, text in sorted(self._records.pop(self._next, ())):
                if len(self.chosen) < self.n and (self.dedup is None or self.dedup.check(text)):
                    self.chosen.append(record_id)
            self._next += 1
        return self.reached

    def summary(self) -> dict[str, Any]:
        return {"records": self.n, "reached": self.reached, "dataset": len(self.chosen)}

    def finish(self, run_dir: Path) -> dict[str, Any] | None:
        """Write dataset.jsonl (and dedup.json with dedup on: what was checked until the N-th
        record); the dedup stats for the summary."""
        write_dataset(run_dir, self.chosen)
        if self.dedup is None:
            return None
        stats = {**self.dedup.stats(), "order": "seed"}
        write_atomic(run_dir / "dedup.json", orjson.dumps(stats, option=orjson.OPT_INDENT_2))
        return stats


def make_target(n: int | None, dedup: Any) -> Target | None:
    """The target of a run (None or 0: none); `dedup`: the config's dedup section."""
    if not n:
        return None
    if not dedup.enabled:
        return Target(n)
    from gristmill.dataset.dedup import OnlineDeduper, instruction_text  # numpy: if used

    return Target(n, OnlineDeduper(dedup.threshold), instruction_text)


def write_dataset(run_dir: Path, ids: list[str]) -> None:
    """RUN/dataset.jsonl: the lines of RUN/output.jsonl with these ids, in this order (one
    pass to find their offsets, then a seek to each: memory is the ids', not the records')."""
    source = run_dir / "output.jsonl"
    where: dict[str, tuple[int, int] | None] = dict.fromkeys(ids)
    offset = 0
    with source.open("rb") as fh:
        for line in fh:
            record_id = line_id(line)
            if record_id in where and line.endswith(b"\n"):
                where[record_id] = (offset, len(line))
            offset += len(line)
        missing = [record_id for record_id, at in where.items() if at is None]
        if missing:  # the store flushed before this: a bug, not a state to write around
            raise RuntimeError(f"{len(missing)} chosen records are not in {source}")
        with atomic_path(run_dir / "dataset.jsonl", durable=True) as tmp, tmp.open("wb") as out:
            for record_id in ids:
                at, length = where[record_id]  # type: ignore[misc]
                fh.seek(at)
                out.write(fh.read(length))
