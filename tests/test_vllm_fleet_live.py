"""The fleet against a real vLLM (the CPU build here, a tiny local model): no process left
behind after a start error or a cancel; a pipeline through two servers with each endpoint's
cap following its server's /metrics; a server killed mid-run (kill -9 of its process group)
restarted with no record lost.

Each server start costs ~3 GB and 30-90 s on 2 cores, so the suite starts few: a failing one,
one cancelled while starting, two for the pipeline, one plus its restart for the kill."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from gristmill.backends.mock.process import MockServerProcess
from gristmill.backends.vllm.fleet import FleetError, VLLMFleet
from gristmill.backends.vllm.server import ServerSpec
from gristmill.config.load import validate_config
from gristmill.runs.runner import Run, RunOptions, run
from tests.conftest import pipeline_config

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]
SEEDS = 40


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (not zombie) processes of a process group."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def engine_core_started(pgid: int) -> bool:
    """vLLM names its engine process VLLM::EngineCore."""
    for proc in group_members(pgid):
        try:
            if "EngineCore" in " ".join(proc.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def assert_groups_gone(pgids: list[int], grace_s: float = 5.0) -> None:
    """No live member in any group (a SIGKILLed process may take a moment to go)."""
    assert pgids, "no server was started"
    deadline = time.monotonic() + grace_s
    while any(group_members(pgid) for pgid in pgids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {pgid: group_members(pgid) for pgid in pgids}
    assert not any(left.values()), f"processes left behind: {left}"


def fleet_backend(model: Path, servers: int) -> dict[str, Any]:
    return {"kind": "vllm", "model": "tiny", "max_in_flight": 64, "metrics_interval_s": 0.25,
            "retry": {"max_attempts": 8, "base_s": 0.2, "max_s": 2.0},
            "fleet": {"model": str(model), "servers": servers, "dtype": "bfloat16",
                      "max_model_len": 512, "max_num_seqs": 16, "enforce_eager": True,
                      "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}, "startup_timeout_s": 600}}


def pipeline(tmp_path: Path, backend: dict[str, Any]) -> dict[str, Any]:
    """A question, then its answer: one record per seed. Plain text and no validators: the
    tiny model's random text is not the point here (nor could it write valid JSON).
    `min_tokens` (vLLM's) keeps it from ending an answer at its first token: an empty answer
    is rejected, and a lost record must mean the fleet lost it."""
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=SEEDS)
    data["backends"]["default"] = backend
    for stage in data["stages"]:
        stage.update(output={"type": "text"}, validators={"defaults": False},
                     sampling={"max_tokens": 160, "min_tokens": 8, "temperature": 0.8})
    return data


def record_ids(run_dir: Path) -> list[str]:
    return [orjson.loads(line)["id"] for line in (run_dir / "output.jsonl").read_bytes().splitlines()]


@pytest.fixture(scope="module")
def expected_ids(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Ids depend on lineage, not on the text: the same pipeline on the mock server gives
    the set a run through vLLM must produce."""
    tmp = tmp_path_factory.mktemp("expected")
    with MockServerProcess() as server:
        data = pipeline(tmp, {"base_url": server.base_url, "model": "tiny"})
        asyncio.run(run(validate_config(data), RunOptions(run_dir=tmp / "run", progress=False)))
    ids = record_ids(tmp / "run")
    assert len(ids) == SEEDS
    return set(ids)


async def test_a_server_that_fails_to_start_leaves_no_process(vllm_runtime, tmp_path):
    fleet = VLLMFleet("default", [ServerSpec(model=str(tmp_path / "no-such-model"),
                                             enforce_eager=True,
                                             env={"HF_HUB_OFFLINE": "1"})],
                      log_dir=tmp_path, runtime=lambda: vllm_runtime, say=lambda _: None)
    with pytest.raises(FleetError, match="did not start"):
        await fleet.start()
    assert_groups_gone(fleet.pids())
    assert (tmp_path / "vllm-0.log").stat().st_size > 0  # its reason is in the log


async def test_cancel_while_starting_leaves_no_process(vllm_runtime, tiny_model, tmp_path):
    fleet = VLLMFleet("default", [ServerSpec(model=str(tiny_model), enforce_eager=True,
                                             max_model_len=512)],
                      log_dir=tmp_path, runtime=lambda: vllm_runtime, say=lambda _: None)
    starting = asyncio.create_task(fleet.start())
    while not fleet.pids() or not engine_core_started(fleet.pids()[0]):
        await asyncio.sleep(0.2)  # until vLLM has forked its engine core: the hard case
    pgids = fleet.pids()
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert_groups_gone(pgids)


async def test_pipeline_through_two_servers_with_metrics_driven_caps(tiny_model, tmp_path,
                                                                     expected_ids):
    caps: dict[str, list[int]] = {}
    config = validate_config(pipeline(tmp_path, fleet_backend(tiny_model, servers=2)))
    the_run = Run(config, RunOptions(run_dir=tmp_path / "run", progress=False))
    sampler = asyncio.create_task(sample_caps(the_run, caps))
    summary = await the_run.execute()
    await sampler
    fleet = the_run.clients["default"].backend.capabilities.fleet
    assert_groups_gone(fleet.pids())
    assert summary["rejects"] == 0, summary
    assert set(record_ids(tmp_path / "run")) == expected_ids
    assert len(caps) == 2 and (tmp_path / "run" / "logs" / "vllm-1.log").is_file()
    for url, seen in caps.items():
        # slow start from 8 while the batch has room, within the per-server ceiling (64 / 2)
        assert seen[0] == 8 and 8 < max(seen) <= 32, (url, seen)
    assert set(fleet.base_urls) == set(caps)
    endpoints = the_run.clients["default"].backend.endpoints.endpoints
    assert all(e.outstanding == 0 for e in endpoints)


async def sample_caps(the_run: Run, caps: dict[str, list[int]]) -> None:
    """Each endpoint's caps (changes only) once metrics drive them, while the run lasts, and
    that its server reported a running batch."""
    client = the_run.clients["default"]
    running_seen = False
    while the_run.stats.finished is None:
        if "metrics" in client.caps:
            for e in client.backend.endpoints.endpoints:
                seen = caps.setdefault(e.url, [])
                if not seen or seen[-1] != e.cap:
                    seen.append(e.cap)
        running_seen |= any(load is not None and load.running > 0
                            for load in client.server_load.values())
        await asyncio.sleep(0.05)
    assert running_seen, "no /metrics scrape saw a running batch"


async def test_a_killed_server_is_restarted_and_no_record_is_lost(tiny_model, tmp_path,
                                                                  expected_ids):
    config = validate_config(pipeline(tmp_path, fleet_backend(tiny_model, servers=1)))
    the_run = Run(config, RunOptions(run_dir=tmp_path / "run", progress=False))
    killer = asyncio.create_task(kill_mid_run(the_run))
    summary = await the_run.execute()
    killed_pgid = await killer
    fleet = the_run.clients["default"].backend.capabilities.fleet
    assert summary["backends"]["default"]["servers"]["restarts"] == 1
    assert summary["backends"]["default"]["errors"].get("ConnectionReset", 0) > 0
    ids = record_ids(tmp_path / "run")
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids and summary["rejects"] == 0
    assert_groups_gone([killed_pgid, *fleet.pids()])
    assert killed_pgid not in fleet.pids()


async def kill_mid_run(the_run: Run) -> int:
    """kill -9 the server's whole process group once some records are written."""
    while the_run.stats.records < 6:
        await asyncio.sleep(0.05)
    pgid = the_run.clients["default"].backend.capabilities.fleet.pids()[0]
    os.killpg(pgid, signal.SIGKILL)
    return pgid


async def test_batch_mode_runs_each_file_through_vllm_run_batch(tiny_model, tmp_path,
                                                                 expected_ids):
    """kind: vllm in batch mode: no server; the questions' file, then the answers', each
    through `vllm run-batch` on the tiny model; the records a run through the mock has."""
    backend = fleet_backend(tiny_model, servers=1)
    backend.update(mode="batch", batch_files={"idle_seal_s": 0.5, "max_requests": 200})
    config = validate_config(pipeline(tmp_path, backend))
    the_run = Run(config, RunOptions(run_dir=tmp_path / "run", progress=False))
    summary = await the_run.execute()
    assert summary["rejects"] == 0, summary
    assert set(record_ids(tmp_path / "run")) == expected_ids
    assert the_run.clients["default"].backend.files_done == 2
    log = (tmp_path / "run" / "logs" / "vllm-run-batch-default.log").read_text()
    assert "run_batch" in log or "run-batch" in log or "Running batch" in log
