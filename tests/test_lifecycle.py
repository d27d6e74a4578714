"""After success, failure and cancellation: no request in flight, no permit borrowed, no
waiter queued, no task left pending. And memory stays bounded while seeds stream through.

Runs talk to the in-process scripted backend (tests/scripted.py), on the real clock (a run's
store writes from a thread); one cancellation also runs against the mock server (a real
process), to see the server's connections go. The pipeline alone runs on the virtual clock."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import random
import zlib
from pathlib import Path

import pytest

from gristmill.config.load import validate_config
from gristmill.errors import ConnectionReset, ErrorRateExceeded, ServerError
from gristmill.flows.items import Item
from gristmill.flows.pipeline import Pipeline
from gristmill.protocol import Request
from gristmill.runs.gc_tuning import YOUNG_THRESHOLD, tuned_gc
from gristmill.runs.runner import Run, RunOptions
from gristmill.scheduling.error_rate import ErrorRateGuard
from gristmill.flows.stats import StageStats
from tests.conftest import pipeline_config
from tests.scripted import ScriptedBackend, Step, fail, prompt_of

pytestmark = pytest.mark.engine_core
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


def pipeline_step(request: Request, index: int = 0, latency: float = 0.0) -> Step:
    """The pipeline's answers: two questions for the question stage, an answer otherwise."""
    prompt = prompt_of(request)
    if prompt.startswith("Ask two questions"):  # questions of its own, or the cache answers
        seed = prompt.rsplit("number", 1)[-1]
        return Step(text=json.dumps({"items": [f"Which mill is oldest in {seed}?",
                                               f"Who worked the river in {seed}?"]}),
                    latency=latency)
    # an answer of its own words (the validators reject one that restates the question)
    return Step(text=f"Long before records began, millers built it beside the ford; their "
                     f"families kept it grinding for generations (ledger {zlib.crc32(prompt.encode())}).",
                latency=latency)


def make_run(base_url: str, tmp_path: Path, **backend) -> Run:
    config = validate_config(pipeline_config(base_url, tmp_path, seeds=40, **backend))
    return Run(config, RunOptions(run_dir=tmp_path / "run", progress=False))


def scripted_run(tmp_path: Path, script, **backend) -> tuple[Run, ScriptedBackend]:
    """A run whose one backend is scripted (its HTTP backend, never used, closed first)."""
    run = make_run("http://127.0.0.1:9/v1", tmp_path, **backend)
    client = next(iter(run.clients.values()))
    scripted = ScriptedBackend(script)
    client.backend = scripted
    return run, scripted


@pytest.mark.real_clock
async def test_success_leaves_nothing_behind(tmp_path):
    # latencies of 0-5 ms, the same for the same request
    run, backend = scripted_run(tmp_path, lambda request, index: pipeline_step(request, latency=hash(prompt_of(request)) % 6 / 1000), max_in_flight=8)
    seen, emit = [], run.pipeline.emit

    def emit_and_look(item):
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        emit(item)
    run.pipeline.emit = emit_and_look
    summary = await run.execute()
    assert summary["records"] == 80
    assert len(backend.calls) == 40 + 80 and backend.peak_in_flight <= 8
    # while it ran, the collector's young threshold was raised and start-up's objects frozen
    assert len(seen) == 80
    assert all(young == YOUNG_THRESHOLD and frozen > 0 for young, frozen in seen)
    assert_nothing_leaked(run)
    assert backend.closed
    # no per-record state: a session remembers only the ids earlier sessions wrote
    assert len(run.store.written("output")) == 0


@pytest.mark.real_clock
async def test_failures_leave_nothing_behind(tmp_path):
    rng = random.Random(7)

    def faulty(request: Request, index: int) -> Step:
        roll = rng.random()
        if roll < 0.5:
            return fail(ServerError("500", status=500), latency=0.001)
        if roll < 0.7:
            return fail(ConnectionReset("reset"), latency=0.001)
        return pipeline_step(request, latency=0.001)

    run, backend = scripted_run(tmp_path, faulty, max_in_flight=8,
                                retry={"max_attempts": 2, "base_s": 0.001, "max_s": 0.002})
    run.clients["default"].guard = None  # half the items fail by design: no error-rate stop
    summary = await run.execute()
    assert summary["rejects"] > 0 and summary["records"] + summary["rejects"] > 0
    assert {"ServerError", "ConnectionReset", "ok"} <= set(backend.outcomes)
    assert_nothing_leaked(run)
    rejects = (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == summary["rejects"]


async def test_an_error_rate_stop_leaves_nothing_behind(tmp_path):
    run, _ = scripted_run(tmp_path, lambda request, index: fail(ServerError("500", status=500),
                                                                latency=0.001),
                          max_in_flight=8, retry={"max_attempts": 1})
    run.clients["default"].guard = ErrorRateGuard(rate=0.5, window=20)
    with pytest.raises(ErrorRateExceeded, match="20 of its last 20 requests"):
        await run.execute()
    assert_nothing_leaked(run)
    state = json.loads((tmp_path / "run" / "state.json").read_bytes())
    assert (state["status"], state["stop_reason"], state["exit_code"]) == ("failed", "error_rate", 4)


async def test_an_internal_error_is_the_stop_reason_and_leaves_nothing_behind(tmp_path):
    run, _ = scripted_run(tmp_path, lambda request, index: fail(KeyError("a bug"),
                                                                latency=0.001), max_in_flight=8)
    with pytest.raises(BaseExceptionGroup):
        await run.execute()
    assert_nothing_leaked(run)
    state = json.loads((tmp_path / "run" / "state.json").read_bytes())
    assert (state["status"], state["stop_reason"], state["exit_code"]) == \
        ("failed", "internal_error", 1) and "KeyError" in state["detail"]


@pytest.mark.real_clock
async def test_a_failing_close_is_raised_after_the_store_has_closed(tmp_path):
    """The connections and the store close side by side: an error closing one does not leave
    the other open (the store's writer would hold the last records), and the run still writes
    its state and summary and releases its directory's log before the error is raised."""
    run, backend = scripted_run(tmp_path, pipeline_step, max_in_flight=8)
    close_connections = backend.aclose

    async def failing_close() -> None:  # the fault: closing the sessions raises
        await close_connections()
        raise OSError("cannot close")
    backend.aclose = failing_close
    with pytest.raises(OSError, match="cannot close"):
        await run.execute()
    assert not run.store._thread.is_alive()
    assert len((tmp_path / "run" / "output.jsonl").read_text().splitlines()) == 80
    assert json.loads((tmp_path / "run" / "summary.json").read_bytes())["records"] == 80
    assert json.loads((tmp_path / "run" / "state.json").read_bytes())["status"] == "finished"
    assert run.dir._log_handler not in logging.getLogger("gristmill").handlers
    assert asyncio.all_tasks() == {asyncio.current_task()}, "pending task"


def stop_after_records(run: Run, count: int) -> asyncio.Event:
    """An event set once `count` records were emitted (instead of polling the stats)."""
    reached, emit = asyncio.Event(), run.pipeline.emit

    def emit_and_count(item):
        emit(item)
        if run.stats.records >= count:
            reached.set()
    run.pipeline.emit = emit_and_count
    return reached


@pytest.mark.real_clock
async def test_cancellation_mid_run_leaves_nothing_behind(tmp_path):
    # streamed answers of 12 deltas 5 ms apart, after 50 ms
    run, backend = scripted_run(tmp_path, lambda request, index: Step(
        text=pipeline_step(request).text, latency=0.05, gap=0.005), max_in_flight=6)
    for stage in run.pipeline.stages:
        stage.config.stream = True  # cancel inside open streams too
    reached = stop_after_records(run, 3)
    task = asyncio.create_task(run.execute())
    async with asyncio.timeout(30):  # not forever if no record ever comes
        await reached.wait()
    assert backend.in_flight > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_leaked(run)
    assert "cancelled" in backend.outcomes  # open streams were cut, not awaited
    assert (tmp_path / "run" / "summary.json").exists()  # written even when cancelled


@pytest.mark.integration
async def test_cancellation_mid_run_closes_the_servers_connections(mock_server_factory,
                                                                   tmp_path):
    server = mock_server_factory("--latency-ms", "50", "--tokens-per-s", "200")
    run = make_run(server.base_url, tmp_path, max_in_flight=6)
    for stage in run.pipeline.stages:
        stage.config.stream = True
    reached = stop_after_records(run, 3)
    task = asyncio.create_task(run.execute())
    async with asyncio.timeout(30):  # not forever if no record ever comes
        await reached.wait()
    assert server.stats()["in_flight"] > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_leaked(run)
    # the server saw every connection go (another process: its count is all there is to read)
    for _ in range(100):
        if server.stats()["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    assert server.stats()["in_flight"] == 0
    assert (tmp_path / "run" / "summary.json").exists()


@pytest.mark.real_clock
async def test_stop_admitting_drains_started_work(tmp_path):
    run, backend = scripted_run(tmp_path, lambda request, index: pipeline_step(request, latency=0.02), max_in_flight=4)
    admit = run._admit

    def admit_and_stop() -> None:  # stop once 5 seeds are in
        admit()
        if run.stats.seeds_admitted == 5:
            run.pipeline.stop_admitting()
    run._admit = admit_and_stop
    summary = await asyncio.wait_for(run.execute(), 30)
    admitted = summary["seeds"]
    assert 5 <= admitted < 40
    assert summary["records"] == 2 * admitted  # everything admitted was finished
    assert_nothing_leaked(run)


class CountingStage:
    """A real in-process stage (no model): splits each item in `fan` and counts live items."""

    def __init__(self, name: str, depth: int, fan: int, live: list[int], workers: int = 4):
        self.name, self.depth, self.fan_out, self.live = name, depth, 1, live
        self.workers, self.queue_size, self.fan = workers, 8, fan
        self.parks = False
        self.stats = StageStats(name)

    async def process(self, item: Item, variant: int) -> list[Item]:
        await asyncio.sleep(0)
        self.live[0] += self.fan - 1  # the parent is consumed, `fan` children are born
        self.live[1] = max(self.live[1], self.live[0])
        return [item.child(self.name, str(i), i) for i in range(self.fan)]


async def test_live_items_stay_bounded_while_100k_seeds_stream_through():
    # Debug mode records a traceback for every future and callback: 600k items would take
    # minutes. What it checks is covered by the other tests here.
    asyncio.get_running_loop().set_debug(False)
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
