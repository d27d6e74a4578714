"""Export of dialogues and tool calls: OpenAI lines that follow the fine-tuning format, ShareGPT
function_call/observation turns, Parquet and hf that keep tool calls and tools, HF `datasets`
loading every export, and `--split-by skill`."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from gristmill.dataset.export import export_run

from .conftest import ROOT
from .conversation_records import dialogue, plain, tool_use
from .openai_format import format_errors

RECORDS = [plain("plain-1"), tool_use("tools-1"), dialogue("dialogue-1"),
           {**plain("generic-1"), "skill": None}, tool_use("tools-2"), plain("plain-2")]
BY_ID = {r["id"]: r for r in RECORDS}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "output.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in RECORDS))
    return run_dir


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def without_nulls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An Arrow row's message without the null fields its schema adds (content stays)."""
    return [{k: v for k, v in m.items() if v is not None or k == "content"} for m in messages]


def test_the_format_checker_catches_what_the_api_rejects():
    good = {"messages": tool_use()["messages"], "tools": tool_use()["tools"]}
    assert format_errors(good) == []
    broken = []
    for damage in ("dangling", "arguments", "unknown", "ends", "null", "role", "key"):
        line = copy.deepcopy(good)
        m = line["messages"]
        if damage == "dangling":
            m[3]["tool_call_id"] = "call_9"
        elif damage == "arguments":
            m[2]["tool_calls"][0]["function"]["arguments"] = {"party": 2}
        elif damage == "unknown":
            m[2]["tool_calls"][0]["function"]["name"] = "order_pizza"
        elif damage == "ends":
            m.pop()
        elif damage == "null":
            m[1]["content"] = None
        elif damage == "role":
            m[1]["role"] = "human"
        else:
            line["id"] = "x"
        broken.append(format_errors(line))
    assert all(broken), broken


def test_openai_lines_keep_tool_calls_and_follow_the_format(run: Path):
    lines = read_jsonl(export_run(run, "openai"))
    assert len(lines) == len(RECORDS)
    for src, line in zip(RECORDS, lines):
        assert format_errors(line) == [], src["id"]
        assert line["messages"] == src["messages"]  # null content and tool fields kept as is
        assert line.get("tools") == src.get("tools")  # only records with tools have the key
    calling = lines[1]["messages"][2]
    assert calling["content"] is None and calling["tool_calls"][0]["function"]["arguments"] \
        == '{"party":2}'


def test_openai_arguments_given_as_objects_become_json_text(tmp_path: Path):
    record = tool_use()
    for message in record["messages"]:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    source = tmp_path / "objects.jsonl"
    source.write_bytes(orjson.dumps(record) + b"\n")
    [line] = read_jsonl(export_run(tmp_path, "openai", input_file=source))
    assert format_errors(line) == []
    assert line["messages"] == tool_use()["messages"]


def test_sharegpt_function_call_and_observation_turns(run: Path):
    lines = {line["id"]: line for line in read_jsonl(export_run(run, "sharegpt"))}
    turns = lines["tools-1"]["conversations"]
    assert [t["from"] for t in turns] == ["system", "human", "function_call", "observation",
                                          "gpt", "human", "function_call", "observation", "gpt"]
    assert json.loads(turns[2]["value"]) == {"name": "find_restaurant", "arguments": {"party": 2}}
    assert turns[3]["value"] == '{"name": "Luigi\'s"}'  # one result: its text as it is
    parallel = json.loads(turns[6]["value"])  # two calls in one turn: a list
    assert [c["arguments"]["to"] for c in parallel] == ["Luigi's", "home"]
    assert json.loads(turns[7]["value"]) == [{"taxi": "T-17"}, {"taxi": "T-42"}]  # their results
    assert json.loads(lines["tools-1"]["tools"]) == [t["function"] for t in tool_use()["tools"]]
    assert [t["from"] for t in lines["dialogue-1"]["conversations"]] == \
        ["system"] + ["human", "gpt"] * 3
    assert "tools" not in lines["plain-1"] and "tools" not in lines["dialogue-1"]


def test_sharegpt_keeps_text_written_beside_a_tool_call(tmp_path: Path):
    record = tool_use()
    record["messages"][2]["content"] = "Let me look."
    source = tmp_path / "text.jsonl"
    source.write_bytes(orjson.dumps(record) + b"\n")
    [line] = read_jsonl(export_run(tmp_path, "sharegpt", input_file=source))
    assert line["conversations"][2:4] == [
        {"from": "gpt", "value": "Let me look."},
        {"from": "function_call",
         "value": json.dumps({"name": "find_restaurant", "arguments": {"party": 2}},
                             separators=(",", ":"))}]


def test_parquet_and_hf_keep_tool_calls_tools_and_null_content(run: Path):
    import datasets

    table = pq.read_table(export_run(run, "parquet"))
    message = table.schema.field("messages").type.value_type
    assert [message.field(i).name for i in range(message.num_fields)] == \
        ["role", "content", "tool_calls", "tool_call_id", "name"]
    hf = datasets.load_from_disk(str(export_run(run, "hf")))
    for rows in (table.to_pylist(), list(hf)):
        for src, row in zip(RECORDS, rows):
            assert without_nulls(row["messages"]) == src["messages"], src["id"]
            tools = [{**t, "function": {**t["function"],
                                        "parameters": json.loads(t["function"]["parameters"])}}
                     for t in row["tools"] or []]
            assert tools == src.get("tools", [])
        assert rows[1]["messages"][2]["content"] is None
        assert rows[0]["tools"] is None
    card = (run / "export" / "hf" / "README.md").read_text()
    assert "| `tools` |" in card and "3 with several turns or tools (2 with tool calls)" in card


@pytest.mark.parametrize("fmt", ["openai", "sharegpt"])
def test_hf_datasets_loads_the_jsonl_exports(run: Path, tmp_path: Path, fmt: str):
    import datasets

    path = export_run(run, fmt)
    loaded = datasets.load_dataset("json", data_files=str(path), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == len(RECORDS)
    if fmt == "openai":
        row = loaded[1]
        assert row["messages"][2]["content"] is None
        assert row["messages"][2]["tool_calls"][0]["function"]["name"] == "find_restaurant"
        assert row["messages"][3]["tool_call_id"] == "call_1"
        assert [t["function"]["name"] for t in row["tools"]] == ["find_restaurant", "book_taxi"]
        assert loaded[0]["tools"] is None and loaded[0]["messages"][1]["content"] == \
            RECORDS[0]["messages"][1]["content"]
    else:
        assert json.loads(loaded[1]["tools"])[0]["name"] == "find_restaurant"
        assert loaded[2]["conversations"][-1]["value"] == RECORDS[2]["messages"][-1]["content"]


def test_split_by_skill_writes_one_file_per_skill(run: Path):
    out = export_run(run, "openai", split_by="skill")
    assert out == run / "export" / "openai"
    files = {p.name: read_jsonl(p) for p in out.iterdir()}
    assert sorted(files) == ["multi_turn.jsonl", "none.jsonl", "open_domain_qa.jsonl",
                             "tool_use.jsonl"]
    assert files["tool_use.jsonl"] == [{"messages": BY_ID[i]["messages"],
                                        "tools": BY_ID[i]["tools"]}
                                       for i in ("tools-1", "tools-2")]
    assert [line["messages"] for line in files["open_domain_qa.jsonl"]] == \
        [BY_ID["plain-1"]["messages"], BY_ID["plain-2"]["messages"]]
    assert files["none.jsonl"] == [{"messages": BY_ID["generic-1"]["messages"]}]
    parquet = export_run(run, "parquet", split_by="skill")
    assert pq.read_table(parquet / "tool_use.parquet").column("id").to_pylist() == \
        ["tools-1", "tools-2"]
    export_run(run, "openai", split_by="skill")  # an earlier split export is replaced


def test_split_by_skill_hf_is_a_dataset_dict(run: Path):
    import datasets

    out = export_run(run, "hf", split_by="skill")
    loaded = datasets.load_from_disk(str(out))
    assert isinstance(loaded, datasets.DatasetDict)
    assert {name: d["id"] for name, d in loaded.items()} == {
        "multi_turn": ["dialogue-1"], "none": ["generic-1"],
        "open_domain_qa": ["plain-1", "plain-2"], "tool_use": ["tools-1", "tools-2"]}
    card = (out / "README.md").read_text()
    assert "One split per `skill`." in card and "| tool_use | 2 |" in card


def test_split_export_refuses_an_unrelated_folder(run: Path):
    from gristmill.errors import ConfigError

    out = run / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier split export"):
        export_run(run, "openai", out=out, split_by="skill")
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_split_by(run: Path):
    done = subprocess.run([sys.executable, "-m", "gristmill", "export", str(run), "--format",
                           "sharegpt", "--split-by", "skill"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "in 4 split(s) by skill" in done.stderr
    assert (run / "export" / "sharegpt" / "tool_use.jsonl").is_file()


def test_split_export_streams(tmp_path: Path):
    """Peak memory stays far below the records' size: lines are written as they come."""
    source = tmp_path / "many.jsonl"
    filler = "mill " * 800
    with source.open("wb") as fh:
        for i in range(6000):
            record = tool_use(f"r{i}") if i % 3 else dialogue(f"r{i}")
            record["skill"] = f"skill_{i % 5}"
            record["messages"][1]["content"] = filler
            fh.write(orjson.dumps(record) + b"\n")
    size = source.stat().st_size
    tracemalloc.start()
    try:
        export_run(tmp_path, "openai", input_file=source, split_by="skill")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 25_000_000 and peak < size / 10, (size, peak)


@pytest.mark.timeout(180)
def test_a_real_tool_use_run_exports_valid_fine_tuning_lines(mock_server, tmp_path: Path):
    """configs/tools.yaml on the mock server (native tool calls, several rounds), then every
    export: the OpenAI lines pass the format check and HF datasets loads them."""
    import datasets

    run_dir = tmp_path / "tools-run"
    done = subprocess.run([sys.executable, "-m", "gristmill", "run",
                           str(ROOT / "configs" / "tools.yaml"), "--backend-url",
                           mock_server.base_url, "--run-dir", str(run_dir), "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr
    records = read_jsonl(run_dir / "dataset.jsonl")
    assert records and all(any(m.get("tool_calls") for m in r["messages"]) for r in records)
    lines = read_jsonl(export_run(run_dir, "openai"))
    assert [format_errors(line) for line in lines] == [[]] * len(records)
    assert [line["messages"] for line in lines] == [r["messages"] for r in records]
    loaded = datasets.load_dataset("json", data_files=str(run_dir / "export" / "openai.jsonl"),
                                   split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == len(records)
    hf = datasets.load_from_disk(str(export_run(run_dir, "hf", split_by="skill")))
    assert list(hf) == ["none"] and hf["none"].num_rows == len(records)  # no skills here

