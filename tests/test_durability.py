"""Durable runs: the cache key, resume, and kill -9 at random moments (real CLI processes
against a real mock server)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from gristmill.protocol import Completion, Request, Usage
from gristmill.dataset.cache import AnswerCache, answer_key
from gristmill.dataset.sink import id_key, read_ids, repair_torn_tail
from gristmill.dataset.store import Store
from tests.conftest import pipeline_config

GRISTMILL = [sys.executable, "-m", "gristmill"]
BASE = Request("m", messages=[{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Why do tides rise?"}],
               params={"temperature": 0.2, "max_tokens": 50})


def variant(**change) -> Request:
    fields = {"model": BASE.model, "messages": BASE.messages, "prompt": BASE.prompt,
              "params": BASE.params, "response_format": BASE.response_format, **change}
    return Request(**fields)


@pytest.mark.parametrize("backend, request_", [
    ("other", BASE),
    ("default", variant(model="m2")),
    ("default", variant(messages=[{"role": "system", "content": "Be long."}, BASE.messages[1]])),
    ("default", variant(messages=[BASE.messages[0], {"role": "user", "content": "Why?"}])),
    ("default", variant(params={"temperature": 0.3, "max_tokens": 50})),
    ("default", variant(params={"temperature": 0.2, "max_tokens": 51})),
    ("default", variant(response_format={"type": "json_object"})),
    ("default", Request(BASE.model, messages=BASE.messages, params=BASE.params, attempt=1)),
])
async def test_changing_any_key_field_misses(tmp_path, backend, request_):
    store = Store(tmp_path / "db.sqlite", {})
    try:
        AnswerCache(store, "default").put(answer_key("default", BASE),
                                          Completion("cached", "stop", Usage(1, 1), "m"))
        await store.flush()
        assert AnswerCache(store, "default").get(BASE)[1].text == "cached"  # nothing changed: hit
        assert AnswerCache(store, backend).get(request_)[1] is None
    finally:
        store.close()


def test_same_request_hits_across_runs_and_replicas(tmp_path):
    # the key holds neither the base URL nor the API key: a restarted or other replica hits
    store = Store(tmp_path / "db.sqlite", {})
    AnswerCache(store, "default").put(answer_key("default", BASE),
                                      Completion("cached", "stop", Usage(1, 1), "m"))
    store.close()
    reopened = Store(tmp_path / "db.sqlite", {})
    try:
        assert AnswerCache(reopened, "default").get(variant())[1].text == "cached"
    finally:
        reopened.close()


async def test_a_fresh_store_answers_misses_without_a_query_and_still_finds_its_answers(tmp_path):
    store = Store(tmp_path / "db.sqlite", {})
    queries: list[str] = []
    store._reader.set_trace_callback(queries.append)
    try:
        key = answer_key("default", BASE)
        assert AnswerCache(store, "default").get(BASE)[1] is None
        assert not [q for q in queries if q.startswith("SELECT")]  # the filter said no
        AnswerCache(store, "default").put(key, Completion("cached", "stop", Usage(1, 1), "m"))
        await store.flush()  # committed: no longer in the pending map, so SQLite answers
        assert AnswerCache(store, "default").get(BASE)[1].text == "cached"
        assert [q for q in queries if q.startswith("SELECT")]
    finally:
        store.close()


async def test_flush_and_close_do_not_wait_out_the_commit_interval(tmp_path):
    store = Store(tmp_path / "db.sqlite", {"output": tmp_path / "output.jsonl"},
                  commit_interval_s=3600)  # only a flush or close may end a batch early
    try:
        store.put_answer(b"k" * 16, b"v")
        store.append("output", {"id": "a"})
        await asyncio.wait_for(store.flush(), 30)
        assert store.commits == 1 and (tmp_path / "output.jsonl").read_bytes() == b'{"id":"a"}\n'
        store.put_answer(b"j" * 16, b"w")
    finally:
        await asyncio.wait_for(asyncio.to_thread(store.close), 30)
    assert store.commits == 2 and not store._thread.is_alive()


def test_torn_last_line_is_repaired(tmp_path):
    path = tmp_path / "output.jsonl"
    path.write_bytes(b'{"id":"a"}\n{"id":"b"}\n{"id":"c", "mes')
    assert repair_torn_tail(path) == len(b'{"id":"c", "mes')
    assert path.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n'
    assert repair_torn_tail(path) == 0


def test_written_ids_of_any_form_are_known_on_reopen(tmp_path):
    path = tmp_path / "output.jsonl"
    ids = ["0123456789abcdef", "ffffffffffffffff", "-123456789abcdef", "0x123456789abcde",
           "not hex at all!!", "a-user's-own-id"]
    path.write_bytes(b"".join(orjson.dumps({"id": i}) + b"\n" for i in ids))
    written = read_ids(path)
    assert len(written) == len(ids) and all(id_key(i) in written for i in ids)
    assert id_key("0123456789abcdee") not in written


def write_config(tmp_path: Path, base_url: str, seeds: int, cap: int) -> Path:
    data = pipeline_config(base_url, tmp_path, seeds=seeds, stages=3, max_in_flight=cap)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def output_ids(run_dir: Path) -> list[str]:
    lines = (run_dir / "output.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"", "torn last line"
    return [orjson.loads(line)["id"] for line in lines[:-1]]


def start(config: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*GRISTMILL, "run", str(config), "--run-dir", str(run_dir),
                             "--no-progress", *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> int:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return proc.returncode


def crash_then_finish(config: Path, run_dir: Path, kills: int, rng: random.Random) -> int:
    """Start the run, kill -9 it at a random moment, start it again (a resume), `kills` times;
    then let it finish. Returns how many kills landed (a run may finish before one)."""
    landed = 0
    for _ in range(kills):
        proc = start(config, run_dir)
        time.sleep(rng.uniform(0.4, 1.3))  # start-up, replay, new work: all get hit
        if proc.poll() is not None:
            finish(proc)
            return landed
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        landed += 1
    finish(start(config, run_dir))
    return landed


@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_output(
        mock_server_factory, tmp_path):
    # ~12 s of work, so twelve kills land before it can finish
    server = mock_server_factory("--latency-ms", "20-60")
    cap = 8
    config = write_config(tmp_path, server.base_url, seeds=500, cap=cap)
    finish(start(config, tmp_path / "reference"))
    expected = output_ids(tmp_path / "reference")
    baseline_requests = server.stats()["requests"]
    server.reset()

    run_dir = tmp_path / "crashed"
    kills = crash_then_finish(config, run_dir, 12, random.Random(os.getpid()))
    got = output_ids(run_dir)
    assert kills >= 10
    assert len(got) == len(set(got)), "a record was written twice"
    assert set(got) == set(expected), "records lost or invented"
    # the deduplicated dataset does not depend on completion order or on the crashes
    assert (run_dir / "dataset.jsonl").read_bytes() == \
        (tmp_path / "reference" / "dataset.jsonl").read_bytes()
    extra = server.stats()["requests"] - baseline_requests
    batch = 64  # answers that can be received but not yet committed within a commit interval
    assert extra <= kills * (cap + batch), (extra, kills)


@pytest.mark.timeout(120)
def test_sigint_flushes_and_resume_completes(mock_server_factory, tmp_path):
    server = mock_server_factory("--latency-ms", "20")
    config = write_config(tmp_path, server.base_url, seeds=80, cap=4)
    proc = start(config, tmp_path / "r")
    while server.stats()["completed"] < 30:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "gristmill resume" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(output_ids(tmp_path / "r")) == summary["records"] > 0
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert (state["status"], state["stop_reason"], state["exit_code"]) == ("stopped", "sigint", 130)
    resumed = subprocess.run([*GRISTMILL, "resume", str(tmp_path / "r"), "--no-progress"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    ids = output_ids(tmp_path / "r")
    assert len(ids) == len(set(ids)) == 80 * 2
    status = subprocess.run([*GRISTMILL, "status", str(tmp_path / "r")], capture_output=True,
                            text=True)
    assert "finished" in status.stdout and "records 160" in status.stdout


def test_changed_config_is_refused_unless_forced(mock_server, tmp_path):
    config = write_config(tmp_path, mock_server.base_url, seeds=3, cap=4)
    finish(start(config, tmp_path / "r"))
    changed = subprocess.run([*GRISTMILL, "run", str(config), "--run-dir", str(tmp_path / "r"),
                              "--set", "stages.answer1.prompt=Reply: {{ question }}",
                              "--set", "stages.question.workers=3"],
                             capture_output=True, text=True, timeout=60)
    assert changed.returncode == 2
    assert "stages[1].prompt" in changed.stderr and "workers" not in changed.stderr
    operational = subprocess.run([*GRISTMILL, "run", str(config), "--run-dir",
                                  str(tmp_path / "r"), "--set", "stages.question.workers=3",
                                  "--no-progress"], capture_output=True, text=True, timeout=60)
    assert operational.returncode == 0, operational.stderr
    forced = subprocess.run([*GRISTMILL, "run", str(config), "--run-dir", str(tmp_path / "r"),
                             "--set", "stages.answer1.prompt=Reply: {{ question }}", "--force",
                             "--no-progress"], capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0, forced.stderr


def test_manifest_is_written_by_the_run_and_by_a_resume_that_finds_none(mock_server, tmp_path):
    """The manifest is gathered on a thread while the first requests go out; a session
    killed before it landed leaves none, and the next session writes it."""
    config = write_config(tmp_path, mock_server.base_url, seeds=3, cap=4)
    finish(start(config, tmp_path / "r"))
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert {"python", "aiohttp", "pydantic"} <= set(manifest["versions"])
    assert manifest["backends"]["default"]["model"] == "mock"
    (tmp_path / "r" / "manifest.json").unlink()
    finish(start(config, tmp_path / "r"))  # a resume: config.yaml is there
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["versions"]
    assert len(output_ids(tmp_path / "r")) == 6


def test_no_cache_asks_again(mock_server, tmp_path):
    config = write_config(tmp_path, mock_server.base_url, seeds=3, cap=4)
    finish(start(config, tmp_path / "r"))
    mock_server.reset()
    finish(start(config, tmp_path / "r"))
    assert mock_server.stats()["requests"] == 0  # everything replayed
    finish(start(config, tmp_path / "r", "--no-cache"))
    assert mock_server.stats()["requests"] == 3 + 6 + 6
    assert len(output_ids(tmp_path / "r")) == 6


@pytest.mark.timeout(300)
def test_records_match_their_cached_answers_when_answers_vary(mock_server_factory, tmp_path):
    """Against a server whose answers differ per arrival (a sampling model), every record
    written across kills must carry the answer the cache holds for its request: an answer is
    committed before anything derived from it, and replays use the committed one."""
    import sqlite3

    from gristmill.dataset.cache import decode

    server = mock_server_factory("--latency-ms", "20-60", "--vary")
    config = write_config(tmp_path, server.base_url, seeds=300, cap=8)
    run_dir = tmp_path / "r"
    kills = crash_then_finish(config, run_dir, 10, random.Random(7 + os.getpid()))
    conn = sqlite3.connect(run_dir / "run.sqlite")
    cached = {decode(value).text for (value,) in conn.execute("SELECT value FROM answers")}
    conn.close()
    records = [orjson.loads(line) for line in (run_dir / "output.jsonl").read_bytes().splitlines()]
    assert kills >= 8 and len(records) == 600
    assert len({r["id"] for r in records}) == 600
    for record in records:
        assert record["messages"][-1]["content"] in cached  # the answer
        assert record["messages"][0]["content"] in cached  # the question it was asked from


async def test_identical_requests_in_flight_share_one_answer(mock_server_factory, tmp_path):
    """Two identical requests at once: one is sent, both get its answer (a second answer
    could not be cached, and would be paid for twice)."""
    from gristmill.config.pipeline import BackendConfig
    from gristmill.runs.assembly import make_client

    server = mock_server_factory("--latency-ms", "100", "--vary")
    store = Store(tmp_path / "db.sqlite", {})
    client = make_client("default", BackendConfig(base_urls=[server.base_url], model="mock"))
    client.cache = AnswerCache(store, "default")
    try:
        import asyncio

        first, second = await asyncio.gather(client.call(variant()), client.call(variant()))
    finally:
        await client.aclose()
        store.close()
    assert server.stats()["requests"] == 1
    assert first.text == second.text and second.cached and not client._in_flight
