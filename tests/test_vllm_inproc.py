"""The in-process vLLM backend against the real engine (vLLM's CPU build here): generation,
streaming deltas and usage, abort on cancel, abort on a streaming validator's rejection in a
real pipeline run, clean shutdown. The engine runs in the vLLM runtime's Python, through
tests/vllm_drivers/inproc_checks.py (one engine start for all checks)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.vllm_fixtures import ROOT

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def checks(vllm_runtime, runtime_env, tiny_model: Path, tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("inproc")
    done = subprocess.run([str(vllm_runtime.python), "-m", "tests.vllm_drivers.inproc_checks",
                           str(tiny_model), str(work)], env=runtime_env, cwd=ROOT, capture_output=True,
                          text=True, timeout=800)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_complete_and_stream_give_the_same_answer_with_usage(checks):
    gen = checks["generation"]
    assert gen["complete_text"] and gen["complete_text"] == gen["stream_text"]  # temperature 0
    assert gen["complete_usage"][1] == 24 and gen["complete_usage"][0] > 10  # chat template
    assert gen["stream_deltas"] > 1 and gen["stream_usage_only_last"]
    assert gen["stream_final_usage"] == gen["complete_usage"]
    assert gen["stream_finish"] == "length"
    # a bare prompt has no chat template around it: fewer prompt tokens than the chat
    assert gen["prompt_usage"][1] == 24 and 0 < gen["prompt_usage"][0] < gen["complete_usage"][0]
    assert gen["unfinished_after"] == 0


def test_json_schema_constrains_the_answer(checks):
    assert json.loads(checks["generation"]["structured_text"]) in ("water", "wind")


def test_cancel_aborts_the_request_in_the_engine(checks):
    cancel = checks["cancel"]
    assert cancel["unfinished_during"] == 1 and cancel["cancelled"]
    assert cancel["aborted"] == 1 and cancel["unfinished_after"] == 0
    assert cancel["bad_request"] == "BadRequest" and cancel["unfinished_after_bad"] == 0


def test_streaming_validator_rejection_aborts_in_a_pipeline_run(checks):
    run = checks["pipeline"]
    assert run["records"] == 0 and run["rejects"] == run["seeds"]
    assert run["validation"]["rejected_by_validator"] == {"max_length": run["seeds"]}
    assert run["validation"]["streams_aborted"] == run["seeds"]
    assert run["aborted"] == run["seeds"]  # each rejected stream was aborted in the engine
    assert run["unfinished_after"] == 0 and run["engine_closed"]


def test_shutdown_leaves_no_engine_process(checks):
    shutdown = checks["shutdown"]
    assert any("EngineCore" in c for c in shutdown["children_while_running"]), shutdown
    assert shutdown["children_left"] == []
