"""Dialogue and tool-call runs end to end: the shipped configs on the mock server (a separate
process), streamed and not, native and prompted tools; records in OpenAI's format; kill -9
mid-dialogue, then a resume gives the records of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gristmill.config.load import load_config
from tests.openai_format import format_errors

pytestmark = pytest.mark.integration
GRISTMILL = [sys.executable, "-m", "gristmill"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run(config: str, url: str, run_dir: Path, *sets: str) -> list[dict[str, Any]]:
    args = [arg for s in sets for arg in ("--set", s)]
    done = subprocess.run([*GRISTMILL, "run", str(CONFIGS / config), "--backend-url", url,
                           "--run-dir", str(run_dir), "--no-progress", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return records(run_dir)


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (run_dir / "dataset.jsonl").read_bytes().splitlines()]


def assert_openai_conversation(record: dict[str, Any]) -> None:
    """The fine-tuning format's rules (tests/openai_format.py), on the record's conversation."""
    line = {key: record[key] for key in ("messages", "tools") if key in record}
    assert format_errors(line) == []
    assert record["messages"][-1]["role"] == "assistant" and record["messages"][-1]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_conversations_have_their_turns(mock_server, tmp_path, stream):
    got = run("conversation.yaml", mock_server.base_url, tmp_path / "r",
              f"stages.1.stream={str(stream).lower()}")
    assert len(got) == 5
    for record in got:
        roles = [m["role"] for m in record["messages"]]
        turns = roles.count("user")
        assert 1 <= turns <= 4 and roles == ["system"] + ["user", "assistant"] * turns
        assert_openai_conversation(record)
    assert any(m["role"] == "user" for r in got for m in r["messages"][3:]), "no follow-up"


def test_streamed_and_whole_answers_give_the_same_tool_records(mock_server, tmp_path):
    whole = run("tools.yaml", mock_server.base_url, tmp_path / "whole")
    streamed = run("tools.yaml", mock_server.base_url, tmp_path / "streamed",
                   "stages.2.stream=true")
    assert whole == streamed and len(whole) == 5
    for record in whole:
        assert record["tools"] and any(m.get("tool_calls") for m in record["messages"])
        assert any(m["role"] == "tool" for m in record["messages"])
        assert_openai_conversation(record)


def test_prompted_tools_give_records_in_the_same_format(mock_server, tmp_path):
    got = run("tools.yaml", mock_server.base_url, tmp_path / "r",
              "backends.default.tool_format=prompted")
    assert len(got) == 5
    for record in got:
        assert_openai_conversation(record)
        calls = [c for m in record["messages"] for c in m.get("tool_calls") or []]
        assert calls and all(c["id"].startswith("call_") for c in calls)


def test_the_shipped_configs_validate():
    for name in ("conversation.yaml", "tools.yaml"):
        config = load_config(CONFIGS / name)
        assert config.stages[-1].dialogue is not None


LONG_TALKS = {
    "conversation.yaml": ("stages.1.dialogue.turns.min=6", "stages.1.dialogue.turns.max=6",
                          "stages.1.dialogue.stop=null"),
    "tools.yaml": ("stages.2.dialogue.turns.min=3", "stages.2.dialogue.turns.max=3",
                   "stages.2.dialogue.stop=null"),
    "rag.yaml": ()}  # no dialogue: the index is built before the kill, loaded after it


@pytest.mark.timeout(300)
@pytest.mark.parametrize("config", sorted(LONG_TALKS))
def test_kill_9_mid_run_then_resume_gives_the_same_records(mock_server_factory, tmp_path,
                                                                 config):
    server = mock_server_factory("--latency-ms", "10-30")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(orjson.dumps({"text": f"Passage {i}: " + "The mill by the river "
                                           "ground grain for the valley for two centuries. "
                                           * 5}).decode() + "\n" for i in range(40)))
    long_talks = (*LONG_TALKS[config], f"seeds.path={seeds}", "backends.default.max_in_flight=8")
    reference = run(config, server.base_url, tmp_path / "reference", *long_talks)
    asked = server.stats()["requests"]
    server.reset()

    args = [arg for s in long_talks for arg in ("--set", s)]
    proc = subprocess.Popen([*GRISTMILL, "run", str(CONFIGS / config),
                             "--backend-url", server.base_url, "--run-dir",
                             str(tmp_path / "crashed"), "--no-progress", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while server.stats()["requests"] < asked // 2:  # every item is mid-dialogue by then
        assert proc.poll() is None, "the run ended before the kill"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    before_resume = server.stats()["requests"]
    assert not (tmp_path / "crashed" / "dataset.jsonl").exists()

    got = run(config, server.base_url, tmp_path / "crashed", *long_talks)
    assert got == reference and len(got) >= 35  # a few offers name a tool twice: rejects
    # the turns answered before the kill came from the cache: at most the answers that were
    # in flight or not yet committed are asked again
    asked_again = server.stats()["requests"] - before_resume
    if LONG_TALKS[config]:  # so that asking everything again would break the bound below
        assert asked >= 40 * 12
    assert asked_again <= asked - before_resume + 8 + 64, (asked, before_resume, asked_again)
