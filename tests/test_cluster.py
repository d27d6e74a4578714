"""A run over Ray's own mini-cluster against the mock server (a separate process): the records
of one process, byte for byte after the canonical sort; a worker killed (kill -9 of its
process) and a node removed mid-run rerun their shards with no record lost or doubled and few
answers paid twice; the driver stopped by Ctrl-C or kill -9, then resumed, ends with the same
records; --limit, --target-records and --metrics-port across shards. (Fleets of vLLM servers
on the cluster's GPUs: test_cluster_fleets.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
import yaml

from gristmill.cluster.driver import ClusterRun
from gristmill.config.load import validate_config
from gristmill.runs.options import RunOptions
from gristmill.runs.runner import run
from tests.cluster_support import GRISTMILL, MB, SEEDS, canonical, config_data, lines
from tests.conftest import processes_running

pytestmark = pytest.mark.timeout(300)


async def test_a_cluster_run_writes_the_records_of_one_process(cluster, server, one_process,
                                                             tmp_path):
    driver = ClusterRun(validate_config(config_data(server.base_url, tmp_path)),
                        RunOptions(run_dir=tmp_path / "run", progress=False),
                        address=cluster.address, shards=5, workers=3, say=lambda _: None)
    summary = await driver.execute()
    run_dir = tmp_path / "run"
    assert canonical(run_dir) == canonical(one_process)
    assert lines(run_dir / "dataset.jsonl") == lines(one_process / "dataset.jsonl")
    assert summary["records"] == 2 * SEEDS and summary["seeds"] == SEEDS
    assert summary["stop_reason"] == "complete" and summary["cluster"]["shards_done"] == 5
    assert [s["output"]["lines"] for s in summary["shards"]] == [
        len(lines(run_dir / "shards" / f"{k:05d}" / "output.jsonl")) for k in range(5)]
    assert sum(1 for s in summary["shards"] if s["output"]["lines"]) >= 3  # it did split
    shard_config = yaml.safe_load((run_dir / "shards" / "00000" / "config.yaml").read_text())
    assert shard_config["backends"]["default"]["max_in_flight"] == 22  # 64 over 3 at once
    # shard stores keep a rollback journal (WAL cannot work on a network file system); the
    # file format's read/write version bytes say which: 1 rollback, 2 WAL
    for k in range(5):
        assert (run_dir / "shards" / f"{k:05d}" / "run.sqlite").read_bytes()[18:20] == b"\x01\x01"
    assert (one_process / "run.sqlite").read_bytes()[18:20] == b"\x02\x02"
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["choices"] == "seed_id" and "mod shards" in manifest["shard_rule"]
    assert manifest["merged"]["shards"] == summary["shards"]  # counts and checksums
    # what reads a run directory reads this one: the review index finds each record's seed,
    # export writes the merged dataset, the report is written, status reads the state
    from gristmill.flywheel.review_index import RecordIndex

    first = orjson.loads(lines(run_dir / "output.jsonl")[0])
    assert RecordIndex(run_dir).seed_excerpt(first["seed_id"]) is not None
    exported = subprocess.run([*GRISTMILL, "export", str(run_dir), "--format", "openai"],
                              capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert len(Path(exported.stdout.strip()).read_bytes().splitlines()) == len(
        lines(run_dir / "dataset.jsonl")) > 0
    report = subprocess.run([*GRISTMILL, "report", str(run_dir)], capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0 and (run_dir / "report.html").stat().st_size > 0, report.stderr
    status = subprocess.run([*GRISTMILL, "status", str(run_dir)], capture_output=True,
                            text=True, timeout=60)
    assert "finished (complete, exit 0)" in status.stdout, status.stderr
    assert f"records {2 * SEEDS}" in status.stdout and f"seeds admitted {SEEDS}" in status.stdout
    assert orjson.loads((run_dir / "cluster.json").read_bytes())["shards"] == 5


def worker_processes() -> list[psutil.Process]:
    return processes_running("ray::ShardWorker")


async def test_a_killed_worker_reruns_its_shard_and_nothing_is_lost_or_doubled(
        cluster, server, one_process, tmp_path):
    run_dir = tmp_path / "run"
    asked_before = server.stats()["requests"]
    driver = ClusterRun(validate_config(config_data(server.base_url, tmp_path, max_in_flight=3)),
                        RunOptions(run_dir=run_dir, progress=False),
                        address=cluster.address, shards=3, workers=3, say=lambda _: None)
    running = asyncio.create_task(driver.execute())
    deadline = time.monotonic() + 60
    while not any(len(lines(d / "output.jsonl")) >= 4 for d in (run_dir / "shards").glob("*")):
        assert time.monotonic() < deadline and not running.done()
        await asyncio.sleep(0.05)
    victims = worker_processes()
    assert victims
    victims[0].send_signal(signal.SIGKILL)
    summary = await running
    asked = server.stats()["requests"] - asked_before
    assert summary["cluster"]["worker_restarts"] >= 1
    assert canonical(run_dir) == canonical(one_process)  # none lost, none twice
    # answers paid for twice: at most what was in flight (1 per worker: 3 // 3) plus one
    # commit batch of the killed shard
    assert asked - 3 * SEEDS <= 1 + 4, asked


async def test_a_removed_node_reruns_its_shards(cluster, server, one_process, tmp_path):
    node = cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
    cluster.wait_for_nodes()
    run_dir = tmp_path / "run"
    driver = ClusterRun(validate_config(config_data(server.base_url, tmp_path, max_in_flight=4)),
                        RunOptions(run_dir=run_dir, progress=False),
                        address=cluster.address, shards=4, workers=4, say=lambda _: None)
    running = asyncio.create_task(driver.execute())
    deadline = time.monotonic() + 60
    while (shard := next((k for k, on in driver.placed.items() if on == node.node_id
                          and k in driver.live), None)) is None or len(lines(
            run_dir / "shards" / f"{shard:05d}" / "output.jsonl")) < 2:
        assert time.monotonic() < deadline and not running.done()
        await asyncio.sleep(0.05)
    cluster.remove_node(node, allow_graceful=False)  # its shard is half done
    summary = await running
    assert summary["stop_reason"] == "complete" and summary["cluster"]["worker_restarts"] >= 1
    assert canonical(run_dir) == canonical(one_process)



async def test_the_drivers_metrics_add_up_every_shard(cluster, server, tmp_path):
    """--metrics-port on a cluster run: the driver serves the shards' counters summed, under
    a single run's names, with its own status and the shards' states."""
    from prometheus_client.parser import text_string_to_metric_families

    from gristmill.backends.vllm.server import free_port

    port = free_port()
    driver = ClusterRun(validate_config(config_data(server.base_url, tmp_path)),
                        RunOptions(run_dir=tmp_path / "run", progress=False, metrics_port=port,
                                   metrics_linger_s=3.0),
                        address=cluster.address, shards=3, workers=3, say=lambda _: None)
    running = asyncio.create_task(driver.execute())
    while driver.outcome is None:  # lingering once it has ended: the final figures
        assert not running.done()
        await asyncio.sleep(0.1)
    import aiohttp

    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    summary = await running
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("gristmill_records_written_total", ())] == summary["records"] == 2 * SEEDS
    assert samples[("gristmill_seeds_admitted_total", ())] == SEEDS
    assert samples[("gristmill_stage_done_total", (("stage", "answer1"),))] == 2 * SEEDS
    assert samples[("gristmill_requests_total", (("backend", "default"), ("outcome", "ok")))] \
        == summary["backends"]["default"]["requests"] > 2 * SEEDS  # every shard's
    assert samples[("gristmill_cluster_shards", (("state", "done"),))] == 3
    assert samples[("gristmill_run_status", (("status", "finished"),
                                             ("stop_reason", "complete")))] == 1
    assert sum(1 for name, _ in samples if name == "gristmill_run_status") == 1


async def test_limit_takes_the_first_seeds_of_the_input_and_a_higher_one_resumes(
        cluster, server, tmp_path):
    """--limit on a cluster: the first N seeds of the input, as one process takes them; a
    resume with a higher limit adds the next seeds to their shards, and ends with the
    records of a run with that limit in one process."""
    data = config_data(server.base_url, tmp_path)
    config = validate_config(data)
    expected = {}
    for limit in (20, 35):
        await run(config, RunOptions(run_dir=tmp_path / f"one-{limit}", progress=False,
                                     limit=limit))
        expected[limit] = canonical(tmp_path / f"one-{limit}")
    run_dir = tmp_path / "run"
    for limit in (20, 35):
        driver = ClusterRun(config, RunOptions(run_dir=run_dir, progress=False, limit=limit),
                            address=cluster.address, shards=3, workers=3, say=lambda _: None)
        summary = await driver.execute()
        assert summary["stop_reason"] == "limit" and summary["seeds"] == limit
        assert canonical(run_dir) == expected[limit]
    settings = orjson.loads((run_dir / "settings.json").read_bytes())
    assert settings["limit"] == 35  # kept for the next resume


async def test_a_target_keeps_the_dataset_of_one_process(cluster, server, tmp_path):
    """--target-records on a cluster: in rounds of more seeds, the driver keeps the first N
    records in input order (near-duplicates removed in that order): byte for byte the
    dataset.jsonl of one process with the same target."""
    config = validate_config(config_data(server.base_url, tmp_path))
    one = await run(config, RunOptions(run_dir=tmp_path / "one", progress=False,
                                       target_records=50))
    driver = ClusterRun(config, RunOptions(run_dir=tmp_path / "run", progress=False,
                                           target_records=50),
                        address=cluster.address, shards=3, workers=3, say=lambda _: None)
    summary = await driver.execute()
    assert summary["stop_reason"] == "target" == one["stop_reason"]
    assert summary["target"] == one["target"] == {"records": 50, "reached": True, "dataset": 50}
    assert lines(tmp_path / "run" / "dataset.jsonl") == lines(tmp_path / "one" / "dataset.jsonl")
    assert summary["seeds"] < SEEDS  # it did not need every seed


async def test_the_driver_builds_the_retrieval_index_once_and_shards_load_it(
        cluster, server, tmp_path):
    """`retrieve:` on a cluster: the driver indexes every seed into RUN/retrieval/ once;
    each shard searches that index (none builds its own), so the records and the passages
    they name are those of one process."""
    data = config_data(server.base_url, tmp_path)
    data["retrieval"] = {}
    data["stages"][0]["retrieve"] = {"k": 2, "distractors": 1}
    data["stages"][0]["prompt"] = ("{% for p in passages %}[{{ p.id }}] {% endfor %}"
                                   "Ask two questions about: {{ seed }}")
    config = validate_config(data)
    await run(config, RunOptions(run_dir=tmp_path / "one", progress=False))
    run_dir = tmp_path / "run"
    driver = ClusterRun(config, RunOptions(run_dir=run_dir, progress=False),
                        address=cluster.address, shards=3, workers=3, say=lambda _: None)
    await driver.execute()
    assert canonical(run_dir) == canonical(tmp_path / "one")
    first = orjson.loads(canonical(run_dir)[0])
    assert [e["stage"] for e in first["lineage"]].count("question.passage") == 2
    digest = orjson.loads((run_dir / "manifest.json").read_bytes())["retrieval"]["digest"]
    for k in range(3):
        shard = run_dir / "shards" / f"{k:05d}"
        assert not (shard / "retrieval").exists()
        assert orjson.loads((shard / "manifest.json").read_bytes())["retrieval"]["digest"] \
            == digest


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_driver_resumes_on_ray_with_the_same_records(cluster, server, one_process,
                                                               tmp_path, how):
    run_dir = tmp_path / "run"
    config = write_config(tmp_path, config_data(server.base_url, tmp_path, max_in_flight=3))
    driver = subprocess.Popen([*GRISTMILL, "run", str(config), "--run-dir", str(run_dir),
                               "--ray", cluster.address, "--shards", "4", "--workers", "2",
                               "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    deadline = time.monotonic() + 120
    while sum(len(lines(d / "output.jsonl")) for d in (run_dir / "shards").glob("*")) < 6:
        assert time.monotonic() < deadline and driver.poll() is None, driver.communicate()[1]
        time.sleep(0.05)
    driver.send_signal(how)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == (130 if how == signal.SIGINT else -signal.SIGKILL), stderr
    if how == signal.SIGINT:
        summary = orjson.loads((run_dir / "summary.json").read_bytes())
        assert summary["stop_reason"] == "sigint" and summary["exit_code"] == 130
    deadline = time.monotonic() + 30
    while worker_processes() and time.monotonic() < deadline:  # the dead driver's actors go
        time.sleep(0.2)
    resumed = subprocess.run([*GRISTMILL, "resume", str(run_dir), "--ray", cluster.address,
                              "--no-progress"], capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert canonical(run_dir) == canonical(one_process)
    assert os.path.exists(run_dir / "dataset.jsonl")


@pytest.mark.parametrize("asks, named", [
    ({"options": {"budget_usd": 1.0}}, "--budget-usd"),
    ({"backend": {"mode": "batch"}}, "mode: batch"),
])
def test_what_a_cluster_run_does_not_divide_yet_is_a_config_error(tmp_path, asks, named):
    from gristmill.errors import ConfigError

    data = config_data("http://127.0.0.1:9/v1", tmp_path, **asks.get("backend", {}))
    if named == "--budget-usd":
        data["backends"]["default"]["price"] = {"input": 1, "output": 1}
    with pytest.raises(ConfigError, match=f"{named}.*not supported with --ray"):
        ClusterRun(validate_config(data), RunOptions(run_dir=tmp_path / "run",
                                                     **asks.get("options", {})))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_shards_without_ray_is_a_usage_error(tmp_path):
    config = write_config(tmp_path, config_data("http://127.0.0.1:9/v1", tmp_path))
    done = subprocess.run([*GRISTMILL, "run", str(config), "--shards", "4"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "add --ray" in done.stderr


def test_a_one_process_run_is_not_resumed_on_ray(tmp_path, server):
    config = write_config(tmp_path, config_data(server.base_url, tmp_path))
    first = subprocess.run([*GRISTMILL, "run", str(config), "--run-dir", str(tmp_path / "run"),
                            "--limit", "2", "--no-progress"], capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([*GRISTMILL, "resume", str(tmp_path / "run"), "--ray"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "resume it without --ray" in again.stderr


def test_a_summary_of_no_shard_has_zeros_to_print():
    from gristmill.cluster.merge import merged_summary

    summary = merged_summary([], 1.5)
    assert (summary["records"], summary["rejects"], summary["seeds"], summary["tokens"]) == (
        0, 0, 0, 0) and summary["rejects_by_reason"] == {}
