"""After success, failure and cancellation: no request in flight, no permit borrowed, no
waiter queued, no task left pending. And memory stays bounded while seeds stream through."""

from __future__ import annotations

import asyncio
import json
import logging
import gc

import pytest

from gristmill.config.load import validate_config
from gristmill.flows.items import Item
from gristmill.flows.pipeline import Pipeline
from gristmill.runs.gc_tuning import YOUNG_THRESHOLD, tuned_gc
from gristmill.runs.runner import Run, RunOptions
from gristmill.flows.stats import StageStats
from tests.conftest import pipeline_config

pytestmark = pytest.mark.both_loops
DEFAULT_YOUNG = gc.get_threshold()[0]


def assert_nothing_leaked(run: Run) -> None:
    assert gc.get_threshold()[0] == DEFAULT_YOUNG and gc.get_freeze_count() == 0, "GC tuning"
    for client in run.clients.values():
        assert client.pool.in_flight == 0, "borrowed permit"
        assert client.pool.waiting == 0, "queued waiter"
        assert client.backend.in_flight == 0, "request in flight"
    for stage in run.stats.stages:
        assert stage.in_flight == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}, "pending task"


def make_run(base_url, tmp_path, **backend) -> Run:
    config = validate_config(pipeline_config(base_url, tmp_path, seeds=40, **backend))
    return Run(config, RunOptions(run_dir=tmp_path / "run", progress=False))


async def test_success_leaves_nothing_behind(mock_server_factory, tmp_path):
    server = mock_server_factory("--latency-ms", "0-5")
    run = make_run(server.base_url, tmp_path, max_in_flight=8)
    seen, emit = [], run.pipeline.emit

    def emit_and_look(item):
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        emit(item)
    run.pipeline.emit = emit_and_look
    summary = await run.execute()
    assert summary["records"] == 80
    # while it ran, the collector's young threshold was raised and start-up's objects frozen
    assert len(seen) == 80
    assert all(young == YOUNG_THRESHOLD and frozen > 0 for young, frozen in seen)
    assert_nothing_leaked(run)
    # no per-record state: a session remembers only the ids earlier sessions wrote
    assert len(run.store.written("output")) == 0


async def test_failures_leave_nothing_behind(mock_server_factory, tmp_path):
    server = mock_server_factory("--rate-500", "0.5", "--rate-reset", "0.2", "--seed", "7")
    run = make_run(server.base_url, tmp_path, max_in_flight=8,
                   retry={"max_attempts": 2, "base_s": 0.001, "max_s": 0.002})
    summary = await run.execute()
    assert summary["rejects"] > 0 and summary["records"] + summary["rejects"] > 0
    assert_nothing_leaked(run)
    rejects = (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == summary["rejects"]


async def test_a_failing_close_is_raised_after_the_store_has_closed(mock_server_factory,
                                                                      tmp_path):
    """The connections and the store close side by side: an error closing one does not leave
    the other open (the store's writer would hold the last records)."""
    server = mock_server_factory()
    run = make_run(server.base_url, tmp_path, max_in_flight=8)
    client = next(iter(run.clients.values()))
    close_connections = client.backend.aclose

    async def failing_close() -> None:  # the fault: closing the sessions raises
        await close_connections()
        raise OSError("cannot close")
    client.backend.aclose = failing_close
    with pytest.raises(OSError, match="cannot close"):
        await run.execute()
    assert not run.store._thread.is_alive()
    assert len((tmp_path / "run" / "output.jsonl").read_text().splitlines()) == 80
    assert asyncio.all_tasks() == {asyncio.current_task()}, "pending task"


async def test_cancellation_mid_run_leaves_nothing_behind(mock_server_factory, tmp_path):
    server = mock_server_factory("--latency-ms", "50", "--tokens-per-s", "200")
    run = make_run(server.base_url, tmp_path, max_in_flight=6)
    for stage in run.pipeline.stages:
        stage.config.stream = True  # cancel inside open streams too
    task = asyncio.create_task(run.execute())
    while run.stats.stages[1].done < 3:
        await asyncio.sleep(0.01)
    assert server.stats()["in_flight"] > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_leaked(run)
    # the server saw every connection go
    for _ in range(100):
        if server.stats()["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    assert server.stats()["in_flight"] == 0
    assert (tmp_path / "run" / "summary.json").exists()  # written even when cancelled


async def test_stop_admitting_drains_started_work(mock_server_factory, tmp_path):
    server = mock_server_factory("--latency-ms", "20")
    run = make_run(server.base_url, tmp_path, max_in_flight=4)
    task = asyncio.create_task(run.execute())
    while run.stats.seeds_admitted < 5:
        await asyncio.sleep(0.005)
    run.pipeline.stop_admitting()
    summary = await asyncio.wait_for(task, 30)
    admitted = summary["seeds"]
    assert admitted < 40
    assert summary["records"] == 2 * admitted  # everything admitted was finished
    assert_nothing_leaked(run)


class CountingStage:
    """A real in-process stage (no model): splits each item in `fan` and counts live items."""

    def __init__(self, name: str, depth: int, fan: int, live: list[int], workers: int = 4):
        self.name, self.depth, self.fan_out, self.live = name, depth, 1, live
        self.workers, self.queue_size, self.fan = workers, 8, fan
        self.stats = StageStats(name)

    async def process(self, item: Item, variant: int) -> list[Item]:
        await asyncio.sleep(0)
        self.live[0] += self.fan - 1  # the parent is consumed, `fan` children are born
        self.live[1] = max(self.live[1], self.live[0])
        return [item.child(self.name, str(i), i) for i in range(self.fan)]


async def test_live_items_stay_bounded_while_100k_seeds_stream_through():
    live = [0, 0]  # current, peak
    stages = [CountingStage("a", 0, 2, live), CountingStage("b", 1, 3, live),
              CountingStage("c", 2, 1, live)]
    emitted = 0

    def emit(item: Item) -> None:
        nonlocal emitted
        emitted += 1
        live[0] -= 1

    def seeds():
        for i in range(100_000):
            live[0] += 1
            live[1] = max(live[1], live[0])
            yield Item(str(i), str(i), {"seed": i})

    await Pipeline(stages, emit).run(seeds())
    assert emitted == 100_000 * 6 and live[0] == 0
    # bound: every channel full, every worker holding its item and its unsent children
    bound = sum(s.queue_size + s.workers * max(s.fan, 1) for s in stages) + 1
    assert live[1] <= bound, (live[1], bound)


async def test_an_idle_worker_starts_on_the_first_seed_not_after_the_channel_fills():
    """The first request goes out as soon as one seed is read: seeds are read at the pace
    idle workers take them, not in a burst that fills the first channel first."""
    read = 0
    read_when_started: list[int] = []

    class FirstSeen(CountingStage):
        async def process(self, item: Item, variant: int) -> list[Item]:
            read_when_started.append(read)
            return await super().process(item, variant)

    def seeds():
        nonlocal read
        for i in range(40):
            read += 1
            yield Item(str(i), str(i), {"seed": i})

    stage = FirstSeen("a", 0, 1, [0, 0], workers=4)  # queue_size 8
    await Pipeline([stage], lambda item: None).run(seeds())
    assert read_when_started[:4] == [1, 2, 3, 4]  # each worker began on the seed just read
    assert len(read_when_started) == 40


async def test_gc_tuning_nests_and_is_restored_after_an_error():
    with pytest.raises(RuntimeError):
        with tuned_gc():
            with tuned_gc():  # a second run in the same process
                pass
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD, "the first run is still going"
            raise RuntimeError
    assert gc.get_threshold()[0] == DEFAULT_YOUNG and gc.get_freeze_count() == 0


async def test_gc_tuning_leaves_a_callers_own_freeze_alone():
    gc.freeze()  # e.g. a pre-fork server's
    try:
        frozen = gc.get_freeze_count()
        with tuned_gc():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert 0 < gc.get_freeze_count() <= frozen, "the caller's frozen objects stay frozen"
        assert gc.get_threshold()[0] == DEFAULT_YOUNG
    finally:
        gc.unfreeze()


async def test_a_failing_close_still_writes_the_summary_and_closes_the_run_dir(
        mock_server_factory, tmp_path, monkeypatch):
    """The store's last commit fails (a full disk, say): the run raises that error, and still
    leaves state.json and summary.json and releases the run directory's log."""
    from gristmill.dataset.store import Store

    server = mock_server_factory("--latency-ms", "0-5")
    run = make_run(server.base_url, tmp_path, max_in_flight=8)
    close = Store.close

    def failing_close(store: Store) -> None:
        close(store)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Store, "close", failing_close)
    with pytest.raises(OSError, match="No space left"):
        await run.execute()
    assert json.loads((tmp_path / "run" / "summary.json").read_bytes())["records"] == 80
    assert json.loads((tmp_path / "run" / "state.json").read_bytes())["status"] == "finished"
    assert run.dir._log_handler not in logging.getLogger("gristmill").handlers
    assert_nothing_leaked(run)
