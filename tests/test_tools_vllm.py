"""Prompted tool calls from the embedded model: SmolLM2-135M behind a real `vllm serve` (the
CPU build here) has no tool-call parser, so a dialogue with tools asks for its calls as JSON
under a JSON-schema response_format; the records come out in OpenAI's tools format."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from gristmill.config.load import validate_config
from gristmill.errors import ConfigError
from gristmill.runs.runner import RunOptions, run
from tests.test_dialogue import WEATHER
from tests.test_dialogue_runs import assert_openai_conversation

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]
CITIES = ["Oslo", "Lisbon", "Nairobi"]


def test_the_embedded_model_calls_tools_in_the_prompted_format(smollm2, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(orjson.dumps({"text": f"What is the weather in {city} right "
                                                   "now? Use the get_weather tool."}).decode()
                             + "\n" for city in CITIES))
    data = {"name": "tools-vllm", "seeds": {"path": str(seeds), "min_chars": 1},
            "backends": {"default": {
                "kind": "vllm", "model": "smollm2", "max_in_flight": 8,
                "fleet": {"model": str(smollm2), "servers": 1, "max_model_len": 2048,
                          "enforce_eager": True, "env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
                          "startup_timeout_s": 600}}},
            "stages": [{"name": "chat", "system": "You are a helpful assistant.",
                        "prompt": "{{ seed }}", "validators": {"defaults": False},
                        "sampling": {"temperature": 0.0, "max_tokens": 256},
                        "dialogue": {"turns": {"min": 1, "max": 1}, "tools": {
                            "offer": [WEATHER], "max_rounds": 1,
                            "simulator": {"failure_rate": 0.0}}}}]}
    config = validate_config(data)
    assert not config.backends["default"].tools_native  # vllm serve: prompted by default
    summary = asyncio.run(run(config, RunOptions(run_dir=tmp_path / "run", progress=False)))
    records = [orjson.loads(line)
               for line in (tmp_path / "run/output.jsonl").read_bytes().splitlines()]
    assert records and summary["records"] == len(records), summary
    for record in records:
        assert record["tools"] == [WEATHER]
        assert_openai_conversation(record)
    calls = [c for r in records for m in r["messages"] for c in m.get("tool_calls") or []]
    assert calls, "the model called no tool"
    assert {c["function"]["name"] for c in calls} == {"get_weather"}
    assert all("city" in orjson.loads(c["function"]["arguments"]) for c in calls)


def test_a_vllm_fleet_without_a_tool_parser_refuses_native_calls(tmp_path: Path):
    with pytest.raises(ConfigError, match="enable-auto-tool-choice"):
        validate_config({"name": "x", "seeds": {"path": str(tmp_path)},
                         "backends": {"default": {"kind": "vllm", "model": "m",
                                                  "tool_format": "native",
                                                  "fleet": {"model": "m"}}},
                         "stages": [{"name": "a", "prompt": "{{ seed }}"}]})
