"""The flow of items: a pull-based source, stages joined by bounded channels, all in one
TaskGroup.

Each stage runs a fixed number of workers. The source is read only when the first channel has
room, and a worker takes a new item only when it is free, so memory is bounded by channel sizes
and worker counts, never by input size. End of input travels down the channels: a channel ends
when every worker feeding it has finished, and the run ends when the last stage drains.

With `on_seed_done`, the pipeline counts each admitted seed's units still queued or at work
(fan-out and list outputs add to the count, a finished unit takes one off) and calls it when a
seed's last unit is done: every record of that seed was emitted, every reject written.

A stage whose requests go into batch files (`parks`) does not hold a worker per waiting
request: the request raises `Parked`, the item goes into the parking lot and the worker takes
the next one; `answered(keys)` puts the items back at the head of their stage's channel once
the answers are there. Such a stage's channel ends only when nothing of it is parked and no
worker is at an item that could park again. When no worker is busy, no channel holds work and
the source is read to its end, nothing more can come until an answer does: `on_quiet` is
called (batch files are sealed then, without waiting for a timer). A `NotSent` item (the
budget is closed) just leaves: its seed stays not done."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Iterator, Protocol

from gristmill.errors import NotSent, Parked
from gristmill.flows.channel import Channel, EndOfStream
from gristmill.flows.items import Item
from gristmill.flows.parking import ParkingLot, Ticket
from gristmill.flows.stats import StageStats

Emit = Callable[[Item], None]
SeedDone = Callable[[str], None]  # called with the seed id


class Stage(Protocol):
    name: str
    depth: int
    workers: int
    queue_size: int
    fan_out: int
    parks: bool  # its requests may wait in batch files (`Parked`)
    stats: StageStats

    async def process(self, item: Item, variant: int) -> list[Item]: ...


Unit = tuple[Item | Ticket, int]  # an item (or its ticket) and its request's index (fan-out)


class Pipeline:
    def __init__(self, stages: list[Stage], emit: Emit,
                 on_seed_done: SeedDone | None = None, parking: Path | None = None,
                 on_quiet: Callable[[], None] | None = None) -> None:
        self.stages = stages
        self.emit = emit
        self.on_seed_done = on_seed_done
        self._open: dict[str, int] = {}  # seed id -> units not yet done (with on_seed_done)
        self.channels: list[Channel[Unit]] = [
            Channel(stage.queue_size, producers=1 if i == 0 else stages[i - 1].workers)
            for i, stage in enumerate(stages)]
        self.parking_path = parking  # where parked items wait (a temporary file if None)
        self.parking: ParkingLot | None = None  # open while the pipeline runs, if a stage parks
        self.on_quiet = on_quiet
        self._held = [0] * len(stages)  # per stage: items parked or put back, not yet done
        self._busy = 0  # workers at an item
        self._fed = False  # the source is read to its end (or admission stopped)
        self._feeder: asyncio.Task[None] | None = None
        self._stopping = False
        self._between_seeds = False  # the feeder may be cancelled without splitting a seed

    async def run(self, seeds: Iterable[Item], on_admit: Callable[[], None] = lambda: None) -> None:
        with self._parking_lot():
            await self._run(seeds, on_admit)

    @contextlib.contextmanager
    def _parking_lot(self) -> Iterator[None]:
        if not any(stage.parks for stage in self.stages):
            yield
            return
        with contextlib.ExitStack() as scratch:
            path = self.parking_path or Path(scratch.enter_context(
                tempfile.TemporaryDirectory(prefix="gristmill-parking-"))) / "parked.sqlite"
            self.parking = ParkingLot(path)
            try:
                yield
            finally:
                lot, self.parking = self.parking, None
                lot.close()

    async def _run(self, seeds: Iterable[Item], on_admit: Callable[[], None]) -> None:
        async with asyncio.TaskGroup() as group:
            for i, stage in enumerate(self.stages):  # waiting before the first seed comes
                deliver = self._deliverer(i)
                for w in range(stage.workers):
                    group.create_task(self._work(stage, self.channels[i], deliver, i),
                                      name=f"{stage.name}-{w}")
            self._feeder = group.create_task(self._feed(seeds, on_admit), name="feed")

    @property
    def stopped(self) -> bool:
        """True when admission was stopped before the source ran out."""
        return self._stopping

    def stop_admitting(self) -> None:
        """Read no more seeds; what was admitted still runs to the end."""
        self._stopping = True
        if self._between_seeds and self._feeder is not None and not self._feeder.done():
            self._feeder.cancel()  # it waits for room for a seed not yet admitted

    def queued(self, index: int) -> int:
        return len(self.channels[index])

    async def _feed(self, seeds: Iterable[Item], on_admit: Callable[[], None]) -> None:
        inbox, fan_out = self.channels[0], self.stages[0].fan_out
        try:
            for seed in seeds:
                if self._stopping:
                    break
                self._between_seeds = True
                self._opened(seed.seed_id, fan_out)  # all variants before the first: a worker
                woke = await inbox.send((seed, 0))  # may finish it while the rest wait for room
                self._between_seeds = False
                on_admit()
                for variant in range(1, fan_out):
                    woke = await inbox.send((seed, variant)) or woke
                if woke:  # an idle worker: let it send its request before the next seed is
                    await asyncio.sleep(0)  # read, not after the channel is full
        finally:
            self._fed = True
            inbox.close_producer()
            self._maybe_quiet()

    def answered(self, keys: Iterable[bytes]) -> None:
        """The answers to `keys` have arrived: their parked items go back to their stages
        (after the pipeline has ended nothing is parked: a resumed file's late answers wait
        in the backend for the next session)."""
        if self.parking is None:
            return
        for key in keys:
            for stage, ticket, variant in self.parking.answered(key):
                self.channels[stage].put_back((ticket, variant))

    def _park(self, key: bytes, index: int, item: Item, variant: int) -> None:
        assert self.parking is not None
        self.parking.park(key, index, item, variant)
        self._hold(index)

    def _hold(self, index: int) -> None:
        if self._held[index] == 0:  # the channel stays open while anything is held
            self.channels[index].open_producer()
        self._held[index] += 1

    def _unhold(self, index: int) -> None:
        self._held[index] -= 1
        if self._held[index] == 0:
            self.channels[index].close_producer()

    def _maybe_quiet(self) -> None:
        if (self.on_quiet is not None and self._busy == 0 and self._fed
                and not any(len(channel) for channel in self.channels)):
            self.on_quiet()

    def _opened(self, seed_id: str, units: int) -> None:
        if self.on_seed_done is not None:
            self._open[seed_id] = self._open.get(seed_id, 0) + units

    def _closed(self, seed_id: str) -> None:
        if self.on_seed_done is not None:
            left = self._open[seed_id] - 1
            if left:
                self._open[seed_id] = left
            else:
                del self._open[seed_id]
                self.on_seed_done(seed_id)

    def _deliverer(self, index: int) -> Callable[[Item], Awaitable[None]]:
        if index + 1 == len(self.stages):
            emit = self.emit

            async def deliver_last(item: Item) -> None:
                emit(item)
            return deliver_last
        outbox, fan_out = self.channels[index + 1], self.stages[index + 1].fan_out

        async def deliver(item: Item) -> None:
            self._opened(item.seed_id, fan_out)
            for variant in range(fan_out):
                await outbox.send((item, variant))
        return deliver

    async def _work(self, stage: Stage, inbox: Channel[Unit],
                    deliver: Callable[[Item], Awaitable[None]], index: int) -> None:
        stats, hold = stage.stats, stage.parks
        try:
            while True:
                try:
                    item, variant = await inbox.receive(hold)
                except EndOfStream:
                    break
                returned = isinstance(item, Ticket)
                if returned:
                    assert self.parking is not None
                    item = self.parking.take(item)
                stats.in_flight += 1
                self._busy += 1
                try:
                    try:
                        children = await stage.process(item, variant)
                    except Parked as parked:  # answered in a batch: the worker moves on
                        self._park(parked.key, index, item, variant)
                        continue
                    except NotSent:  # not done: a resume asks again
                        continue
                    finally:
                        stats.in_flight -= 1
                        if returned:
                            self._unhold(index)
                        if hold:  # it can park no more
                            inbox.close_producer()
                    stats.done += 1
                    for child in children:
                        await deliver(child)
                    self._closed(item.seed_id)
                finally:
                    self._busy -= 1
                    self._maybe_quiet()
        finally:
            if index + 1 < len(self.channels):
                self.channels[index + 1].close_producer()
