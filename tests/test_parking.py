"""Items set aside while their request waits in a batch: a stage that parks keeps no worker
per waiting request, takes its items back when told their answers arrived, and its channel
does not end while anything of it is parked. Real pipeline, real SQLite lot; the stage is
in-process (the batch backend's side is tested against the mock in test_batch_mode)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gristmill.errors import NotSent, Parked
from gristmill.flows.channel import Channel, EndOfStream
from gristmill.flows.items import Item
from gristmill.flows.parking import ParkingLot
from gristmill.flows.pipeline import Pipeline
from gristmill.flows.stats import StageStats


class BatchLikeStage:
    """Answers an item only once its key was 'answered'; parks it before."""

    def __init__(self, name: str, answers: set[bytes], workers: int = 2) -> None:
        self.name, self.depth, self.fan_out, self.workers, self.queue_size = name, 0, 1, workers, 4
        self.parks = True
        self.stats = StageStats(name)
        self.answers = answers
        self.busy = self.peak_busy = 0

    def key(self, item: Item) -> bytes:
        return f"{self.name}/{item.id}".encode()

    async def process(self, item: Item, variant: int) -> list[Item]:
        self.busy += 1
        self.peak_busy = max(self.peak_busy, self.busy)
        try:
            await asyncio.sleep(0)
            if self.key(item) not in self.answers:
                raise Parked(self.key(item))
            return [item.child(self.name, "0", f"{self.name} of {item.id}")]
        finally:
            self.busy -= 1


def seeds(n: int) -> list[Item]:
    return [Item(f"s{i}", f"s{i}", {"seed": "x" * 1000 + str(i)}) for i in range(n)]


async def test_a_parking_stage_holds_no_worker_per_waiting_item_and_finishes_every_one(tmp_path):
    answers: set[bytes] = set()
    first, second = BatchLikeStage("a", answers), BatchLikeStage("b", answers)
    emitted: list[Item] = []
    peak_parked = 0
    quiet = 0
    lots: list[ParkingLot] = []

    def on_quiet() -> None:
        """Nothing runs: 'the batch' answers everything parked now (told on the next turn,
        as a backend's download task would)."""
        nonlocal peak_parked, quiet
        quiet += 1
        lot = pipeline.parking
        lots.append(lot)
        peak_parked = max(peak_parked, lot.parked)
        keys = [key for (key,) in lot._db.execute("SELECT DISTINCT key FROM parked")
                if key not in answers]  # each key is answered once, as by a backend
        answers.update(keys)
        asyncio.get_running_loop().call_soon(pipeline.answered, keys)

    pipeline = Pipeline([first, second], emitted.append, parking=tmp_path / "parked.sqlite",
                        on_quiet=on_quiet)
    await pipeline.run(seeds(60))
    assert sorted(item.seed_id for item in emitted) == sorted(f"s{i}" for i in range(60))
    assert all(item.values["a"] == f"a of {item.seed_id}" and item.values["seed"].startswith(
        "x" * 1000) and item.values["b"].startswith("b of ") for item in emitted)
    # all 60 waited at once with two workers per stage: parked, not held by workers
    assert peak_parked == 60 and first.peak_busy <= 2 and second.peak_busy <= 2
    assert quiet >= 2  # once per stage's wave at least: files go without a timer
    assert lots[-1].parked == 0 and pipeline.parking is None  # closed, and
    assert not (tmp_path / "parked.sqlite").exists()  # its scratch file gone
    assert all(channel.closed and not len(channel) for channel in pipeline.channels)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_cancel_while_items_are_parked_leaks_nothing(tmp_path):
    stage = BatchLikeStage("a", set())  # never answered
    pipeline = Pipeline([stage], lambda item: None, parking=tmp_path / "parked.sqlite",
                        on_quiet=lambda: None)
    running = asyncio.create_task(pipeline.run(seeds(10)))
    while pipeline.parking is None or pipeline.parking.parked < 10:
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not (tmp_path / "parked.sqlite").exists()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_an_item_not_sent_leaves_without_a_record_and_the_run_ends():
    class Refusing(BatchLikeStage):
        async def process(self, item: Item, variant: int) -> list[Item]:
            if item.id == "s3":
                raise NotSent("budget closed")
            return [item]

    done: list[str] = []
    stage = Refusing("a", set())
    stage.parks = False
    pipeline = Pipeline([stage], lambda item: None, on_seed_done=done.append)
    await pipeline.run(seeds(6))
    assert sorted(done) == ["s0", "s1", "s2", "s4", "s5"]  # s3 is not done: resume asks


def test_the_lot_keeps_items_on_disk_and_gives_each_back_once(tmp_path):
    lot = ParkingLot(tmp_path / "lot.sqlite")
    item = Item("i", "s", {"seed": "text", "out": {"a": [1, 2]}}, [("s", "seed"), ("i", "q")],
                [3, 4], "m")
    lot.park(b"k", 1, item, 2)
    lot.park(b"k", 0, Item("j", "s", {}), 0)
    (stage, ticket, variant), other = sorted(lot.answered(b"k"), reverse=True)
    assert (stage, variant) == (1, 2) and lot.answered(b"other") == []
    assert lot.take(ticket) == item and lot.parked == 1
    lot.close()
    assert not (tmp_path / "lot.sqlite").exists()


async def test_a_held_channel_does_not_end_until_its_holder_is_done():
    channel: Channel[int] = Channel(4)
    await channel.send(1)
    channel.close_producer()  # upstream is finished
    assert await channel.receive(hold=True) == 1
    waiting = asyncio.ensure_future(channel.receive())
    await asyncio.sleep(0)
    assert not waiting.done()  # the holder may still put its item back
    channel.put_back(2)
    assert await waiting == 2
    channel.close_producer()  # the holder is done
    with pytest.raises(EndOfStream):
        await channel.receive()


def test_reopening_an_ended_channel_is_an_error():
    channel: Channel[int] = Channel(1)
    channel.close_producer()
    with pytest.raises(RuntimeError):
        channel.open_producer()


def test_parked_items_round_trip_their_path(tmp_path: Path):
    """Lineage steps come back as pairs: records made from a parked item are unchanged."""
    lot = ParkingLot(tmp_path / "lot.sqlite")
    item = Item("i", "s", {"seed": "t"}, [("s", "seed")])
    lot.park(b"k", 0, item, 0)
    (_, ticket, _), = lot.answered(b"k")
    back = lot.take(ticket)
    assert back.lineage == [("s", "seed")] and isinstance(back.lineage[0], tuple)
    assert back.child("q", "0", "out").id == item.child("q", "0", "out").id
    lot.close()
