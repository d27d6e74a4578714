"""mode: batch against the mock's Files and Batch API (a separate process): the same records
as online; failed, expired and missing lines asked again in later files and nothing that
succeeded asked twice; a kill -9 inside each narrow window of a file's bookkeeping resumes
with no request key in two batches and the records of an uninterrupted run; batch mode for a
stage, the judge, the AgentInstruct flow and vLLM's run-batch. (The provider's side: price,
budget, limits, expiry, cancelling: test_batch_mode_provider.py.)"""

from __future__ import annotations

import asyncio
import sys

import orjson
import pytest
import yaml

from gristmill.backends.mock.process import MockServerProcess
from gristmill.backends.vllm.server import free_port
from gristmill.config.load import validate_config
from gristmill.errors import ConfigError
from gristmill.runs.runner import Run, RunOptions
from tests.batch_support import (FAST, SEEDS, batch_config, gristmill, gristmill_text, records,
                                 submitted_keys)
from tests.conftest import pipeline_config

CRASH_POINTS = ("after_seal", "after_upload", "after_create", "during_download",
                "before_commit")


def test_batch_mode_gives_the_records_of_online_mode(tmp_path, online_records):
    with MockServerProcess() as server:
        done = gristmill("run", str(batch_config(tmp_path, server.base_url)), "--run-dir",
                         str(tmp_path / "run"))
        stats = server.stats()["batches"]
        keys = submitted_keys(server)
    assert done.returncode == 0, done.stderr
    assert records(tmp_path / "run") == online_records
    assert stats["completed"] == 2  # the questions, then their answers: two files
    assert sum(keys.values()) == len(keys) == 60  # each request in one batch, once
    assert not list((tmp_path / "run" / "batches").rglob("*.jsonl"))  # done: cleaned up


@pytest.mark.parametrize("fault", [("--batch-fail-rate", "0.3"), ("--batch-expire-after", "8")])
def test_failed_and_expired_lines_are_asked_again_and_nothing_twice(tmp_path, online_records,
                                                                     fault):
    with MockServerProcess(*fault) as server:
        done = gristmill("run", str(batch_config(tmp_path, server.base_url)), "--run-dir",
                         str(tmp_path / "run"))
        stats = server.stats()["batches"]
    assert done.returncode == 0, done.stderr
    assert records(tmp_path / "run") == online_records
    assert stats["requests_failed"] > 0 and stats["created"] > 2  # later files asked again
    assert stats["requests_completed"] == 60  # no answered request was asked again


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_kill_inside_each_window_resumes_without_a_key_in_two_batches(
        tmp_path, online_records, point):
    port = free_port()
    with MockServerProcess("--batch-ms-per-request", "5", port=port) as server:
        config = batch_config(tmp_path, server.base_url)
        killed = gristmill("run", str(config), "--run-dir", str(tmp_path / "run"),
                           GRISTMILL_CRASH_AT=point)
        assert killed.returncode == -9, killed.stderr  # it died at the point, as kill -9
        resumed = gristmill("resume", str(tmp_path / "run"))
        assert resumed.returncode == 0, resumed.stderr
        keys = submitted_keys(server)
    assert records(tmp_path / "run") == online_records
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    assert len(keys) == 60


async def test_the_python_api_runs_batch_mode_and_leaves_nothing_behind(tmp_path):
    with MockServerProcess() as server:
        data = pipeline_config(server.base_url, tmp_path, seeds=SEEDS, mode="batch",
                               batch_files=FAST)
        the_run = Run(validate_config(data), RunOptions(run_dir=tmp_path / "run",
                                                        progress=False))
        summary = await the_run.execute()
    assert summary["records"] == 2 * SEEDS and summary["stop_reason"] == "complete"
    client = the_run.clients["default"]
    assert client.in_flight == 0 and client.pool.waiting == 0
    assert client.backend.files_done == 2
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_waiting_requests_hold_no_worker_and_stay_within_max_pending(tmp_path,
                                                                          online_records):
    """Two workers per stage, twenty requests waiting at once: items wait on disk, not in
    workers; never more than max_pending requests wait; the records are online's."""
    with MockServerProcess("--batch-ms-per-request", "2") as server:
        data = pipeline_config(server.base_url, tmp_path, seeds=SEEDS, mode="batch",
                               max_in_flight=2, batch_files={**FAST, "max_pending": 12})
        the_run = Run(validate_config(data), RunOptions(run_dir=tmp_path / "run",
                                                        progress=False))
        backend = the_run.clients["default"].backend
        peak = {"waiting": 0, "parked": 0}

        async def sample() -> None:
            while the_run.stats.finished is None:
                peak["waiting"] = max(peak["waiting"], len(backend._waiting))
                if the_run.pipeline.parking is not None:
                    peak["parked"] = max(peak["parked"], the_run.pipeline.parking.parked)
                await asyncio.sleep(0.002)

        sampler = asyncio.create_task(sample())
        summary = await the_run.execute()
        await sampler
    workers = sum(stage.workers for stage in the_run.pipeline.stages)
    assert workers == 4 and peak["waiting"] == 12 and peak["parked"] >= 12
    assert summary["stop_reason"] == "complete" and records(tmp_path / "run") == online_records
    client = the_run.clients["default"]
    assert client.parked == {} and client.in_flight == 0 and not backend._waiting
    assert not (tmp_path / "run" / "batches" / "parked.sqlite").exists()
    assert asyncio.all_tasks() == {asyncio.current_task()}



def test_batch_mode_without_the_answer_cache_is_a_usage_error(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, mode="batch")
    with pytest.raises(ConfigError, match="--no-cache"):
        Run(validate_config(data), RunOptions(run_dir=tmp_path / "run", cache=False))


def test_batch_mode_with_micro_batches_is_a_config_error(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, mode="batch", api="completions",
                           micro_batch={"max_prompts": 4})
    with pytest.raises(ConfigError, match="micro_batch: mode: batch already gathers"):
        validate_config(data)


def test_a_stage_may_go_batch_on_an_online_backend(tmp_path, online_records):
    """The questions online, their answers in a batch: the same records, one batch file."""
    with MockServerProcess() as server:
        data = pipeline_config(server.base_url, tmp_path, seeds=SEEDS)
        data["backends"]["default"]["batch_files"] = FAST
        data["stages"][1]["mode"] = "batch"
        path = tmp_path / "mixed.yaml"
        path.write_text(yaml.safe_dump(data))
        done = gristmill("run", str(path), "--run-dir", str(tmp_path / "run"))
        stats = server.stats()
    assert done.returncode == 0, done.stderr
    assert records(tmp_path / "run") == online_records
    assert stats["batches"]["requests_completed"] == 40 and stats["requests"] == 20


def test_the_judge_may_go_batch_and_judges_as_online(tmp_path):
    """Only the judge's requests go into batch files; records, verdicts and rejects are the
    online judge's."""
    seen = {}
    with MockServerProcess() as server:
        for mode in ("online", "batch"):
            data = pipeline_config(server.base_url, tmp_path, seeds=15, stages=2,
                                   batch_files=FAST)
            data["judge"] = {"mode": mode}  # the mock's judge fails answers about a budget
            path = tmp_path / f"{mode}.yaml"
            path.write_text(yaml.safe_dump(data))
            before = server.stats()["batches"]["created"]
            done = gristmill("run", str(path), "--run-dir", str(tmp_path / mode))
            assert done.returncode == 0, done.stderr
            rejects = tmp_path / mode / "rejects.jsonl"
            seen[mode] = (
                {r["id"]: r["judge"] for r in map(orjson.loads, (
                    tmp_path / mode / "output.jsonl").read_bytes().splitlines())},
                sorted(orjson.loads(line)["item_id"] for line in rejects.read_bytes().splitlines()),
                server.stats()["batches"]["created"] - before)
    (online, online_rejects, online_batches), (batch, batch_rejects, batches) = \
        seen["online"], seen["batch"]
    assert batch == online and batch_rejects == online_rejects and online and online_rejects
    assert online_batches == 0 and batches >= 1


async def test_the_agentinstruct_flow_runs_batch_after_batch_with_the_records_of_online(
        tmp_path):
    """Transformation, generation, two rounds of suggest and edit, answers: seven stages, each
    a wave of batch files the pipeline seals itself, without a human or a timer."""
    from tests.test_flows import flow_config

    out = {}
    with MockServerProcess() as server:
        for mode in ("online", "batch"):
            config = flow_config(server.base_url, ["reading_comprehension"],
                                 agents_per_seed=1, refine_rounds=2)
            backends = {name: b.in_mode(mode).model_copy(update={
                "batch_files": b.batch_files.model_copy(update=FAST)})
                for name, b in config.backends.items()}
            config = config.model_copy(update={"backends": backends})
            the_run = Run(config, RunOptions(run_dir=tmp_path / mode, progress=False, limit=6))
            summary = await the_run.execute()
            assert summary["stop_reason"] == "limit" and summary["rejects"] == 0
            out[mode] = records(tmp_path / mode)
            if mode == "batch":
                assert the_run.clients["default"].backend.files_done >= 7
    assert out["batch"] == out["online"] and len(out["online"]) >= 6
    assert asyncio.all_tasks() == {asyncio.current_task()}


def test_regenerations_after_a_reject_go_online(tmp_path):
    """Answers a validator rejects (here: any with "the" in it) are asked again online, not
    in another batch."""
    with MockServerProcess() as server:
        data = yaml.safe_load(batch_config(tmp_path, server.base_url).read_text())
        data["stages"][1]["validators"] = {
            "stream": [{"name": "forbidden", "patterns": ["(?i)\\bthe\\b"]}],
            "max_regenerations": 1}
        path = tmp_path / "strict.yaml"
        path.write_text(yaml.safe_dump(data))
        done = gristmill("run", str(path), "--run-dir", str(tmp_path / "run"))
        stats = server.stats()
    assert done.returncode == 0, done.stderr
    rejected = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())["rejects"]
    assert rejected > 0
    assert stats["batches"]["requests_completed"] == 60  # every first attempt, in batches
    assert 0 < stats["requests"] <= 40  # online: a regeneration of each rejected answer



async def test_each_model_gets_its_own_files(tmp_path):
    """Requests for two models at once: two files (a provider refuses a file with two). A
    request is parked, not awaited: it is asked again once the backend says it has its
    answer."""
    from gristmill.backends.openai_batch.backend import OpenAIBatchBackend
    from gristmill.config.pipeline import BackendConfig
    from gristmill.errors import Parked
    from gristmill.protocol import Request, request_key

    requests = [Request(model, messages=[{"role": "user", "content": str(i)}])
                for i in range(10) for model in ("a", "b")]
    arrived: set[bytes] = set()
    all_arrived = asyncio.Event()

    def answered(keys: list[bytes]) -> None:
        arrived.update(keys)
        if len(arrived) == len(requests):
            all_arrived.set()

    with MockServerProcess() as server:
        config = BackendConfig(base_url=server.base_url, model="a", mode="batch",
                               batch_files=FAST)
        backend = OpenAIBatchBackend("default", config, tmp_path / "batches")
        backend.tell(answered)
        serving = asyncio.create_task(backend.serve())
        try:
            for request in requests:
                with pytest.raises(Parked):
                    await backend.complete(request)
            backend.flush()
            await asyncio.wait_for(all_arrived.wait(), 30)
            answers = [await backend.complete(request) for request in requests]
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await backend.aclose()
        stats = server.stats()["batches"]
    assert arrived == {request_key("default", r) for r in requests}
    assert {a.model for a in answers} == {"a", "b"} and all(a.text for a in answers)
    assert stats["created"] == stats["completed"] == 2 and stats["failed"] == 0



def test_a_vllm_backend_in_batch_mode_runs_files_through_run_batch(tmp_path, online_records,
                                                                   monkeypatch):
    """kind: vllm with mode: batch: no server, each file through `vllm run-batch` (here the
    mock behind vLLM's command line: GRISTMILL_VLLM_COMMAND); the records of online mode."""
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=SEEDS)
    data["backends"]["default"] = {"kind": "vllm", "model": "mock", "mode": "batch",
                                   "batch_files": FAST, "fleet": {"model": "/models/x"}}
    path = tmp_path / "vllm-batch.yaml"
    path.write_text(yaml.safe_dump(data))
    done = gristmill("run", str(path), "--run-dir", str(tmp_path / "run"),
                     GRISTMILL_VLLM_COMMAND=f"{sys.executable} -m gristmill.backends.mock.vllm_serve")
    assert done.returncode == 0, done.stderr
    assert records(tmp_path / "run") == online_records
    log = (tmp_path / "run" / "logs" / "vllm-run-batch-default.log")
    assert log.is_file() and not list((tmp_path / "run").glob("logs/vllm-[0-9]*.log"))
    listed = gristmill_text("batches", "list", str(tmp_path / "run"))
    assert "2 files, 2 done" in listed and listed.count("completed") == 2

