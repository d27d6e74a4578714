"""The flow of items: a pull-based source, stages joined by bounded channels, all in one
TaskGroup.

Each stage runs a fixed number of workers. The source is read only when the first channel has
room, and a worker takes a new item only when it is free, so memory is bounded by channel sizes
and worker counts, never by input size. End of input travels down the channels: a channel ends
when every worker feeding it has finished, and the run ends when the last stage drains.

With `on_seed_done`, the pipeline counts each admitted seed's units still queued or at work
(fan-out and list outputs add to the count, a finished unit takes one off) and calls it when a
seed's last unit is done: every record of that seed was emitted, every reject written."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable, Protocol

from gristmill.flows.channel import Channel
from gristmill.flows.items import Item
from gristmill.flows.stats import StageStats

Emit = Callable[[Item], None]
SeedDone = Callable[[str], None]  # called with the seed id


class Stage(Protocol):
    name: str
    depth: int
    workers: int
    queue_size: int
    fan_out: int
    stats: StageStats

    async def process(self, item: Item, variant: int) -> list[Item]: ...


Unit = tuple[Item, int]  # an item and the index of the request it is for (fan-out)


class Pipeline:
    def __init__(self, stages: list[Stage], emit: Emit,
                 on_seed_done: SeedDone | None = None) -> None:
        self.stages = stages
        self.emit = emit
        self.on_seed_done = on_seed_done
        self._open: dict[str, int] = {}  # seed id -> units not yet done (with on_seed_done)
        self.channels: list[Channel[Unit]] = [
            Channel(stage.queue_size, producers=1 if i == 0 else stages[i - 1].workers)
            for i, stage in enumerate(stages)]
        self._feeder: asyncio.Task[None] | None = None
        self._stopping = False
        self._between_seeds = False  # the feeder may be cancelled without splitting a seed

    async def run(self, seeds: Iterable[Item], on_admit: Callable[[], None] = lambda: None) -> None:
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
            inbox.close_producer()

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
        stats = stage.stats
        try:
            async for item, variant in inbox:
                stats.in_flight += 1
                try:
                    children = await stage.process(item, variant)
                finally:
                    stats.in_flight -= 1
                stats.done += 1
                for child in children:
                    await deliver(child)
                self._closed(item.seed_id)
        finally:
            if index + 1 < len(self.channels):
                self.channels[index + 1].close_producer()
