"""Export: every format written from a run directory of mixed records, then loaded back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gristmill.errors import ConfigError
from gristmill.dataset.export import EXPORT_FORMATS, export_run

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

N = 50
SKILLS = ("reading_comprehension", "text_modification", "open_domain_qa")


def make_record(i: int) -> dict[str, Any]:
    """Every 3rd record is generic (no skill fields), every 2nd has no system message."""
    messages = [{"role": "user", "content": f"question {i}: \"quotes\", ünïcode,\nlines"},
                {"role": "assistant", "content": f"answer {i}"}]
    if i % 2:
        messages.insert(0, {"role": "system", "content": f"system {i}"})
    rec: dict[str, Any] = {
        "id": f"rec{i:03d}", "messages": messages, "seed_id": f"seed{i // 5}",
        "lineage": [{"id": f"seed{i // 5}", "stage": "seed"},
                    {"id": f"t{i}", "stage": "transform"}],
        "model": "gpt-4o-mini" if i % 4 else "local-llama",
        "usage": {"prompt_tokens": 100 + i, "completion_tokens": 10 + i}}
    if i % 3:
        rec.update(skill=SKILLS[(i // 2) % len(SKILLS)], agent="debate", type=f"type{i % 2}")
    if i % 5 == 1:
        rec["refinements"] = [{"round": 1, "suggestions": ["shorter", "cite"], "instruction": "x"}]
    return rec


RECORDS = [make_record(i) for i in range(N)]
FULL = next(r for r in RECORDS if "skill" in r and "refinements" in r and len(r["messages"]) == 3)
FULL_INDEX = RECORDS.index(FULL)


def write_jsonl(path: Path, records: list[dict[str, Any]], torn: bool = True) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    path.write_bytes(data + (b'{"id": "torn", "messages": [{"ro' if torn else b""))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run-1"
    run_dir.mkdir()
    write_jsonl(run_dir / "output.jsonl", RECORDS)
    config = {"name": "agentinstruct",
              "agentinstruct": {"skills": list(SKILLS), "refine_rounds": 2,
                                "answer": {"backend": "default", "model": "local-llama"}},
              "backends": {"default": {"base_urls": ["http://127.0.0.1:9/v1"],
                                       "model": "gpt-4o-mini",
                                       "api_key_env": "SECRET_KEY_VAR",
                                       "headers": {"X-Org": "org-hidden-value"}}},
              "stages": []}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return run_dir


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_parquet_round_trip(run: Path, caplog: pytest.LogCaptureFixture) -> None:
    messages: list[str] = []
    with caplog.at_level(logging.WARNING, logger="gristmill.export"):
        path = export_run(run, "parquet", say=messages.append)
    assert path == run / "export" / "dataset.parquet"
    assert "torn line" in caplog.text
    assert any("output.jsonl" in m for m in messages)
    table = pq.read_table(path)
    assert table.num_rows == N
    schema = table.schema
    assert schema.field("messages").type == pa.list_(pa.struct([("role", pa.string()),
                                                                ("content", pa.string())]))
    assert schema.field("lineage").type == pa.list_(pa.struct([("id", pa.string()),
                                                               ("stage", pa.string())]))
    assert schema.field("usage").type == pa.struct([("prompt_tokens", pa.int64()),
                                                    ("completion_tokens", pa.int64())])
    refinement = schema.field("refinements").type.value_type
    assert refinement.field("round").type == pa.int64()
    assert refinement.field("suggestions").type == pa.list_(pa.string())
    assert schema.field("skill").type == pa.string()
    rows = table.to_pylist()
    for src, row in zip(RECORDS, rows):
        assert row["messages"] == src["messages"]
        assert row["skill"] == src.get("skill")  # null when absent
        assert row["refinements"] == src.get("refinements", [])
    assert rows[FULL_INDEX] == FULL


def test_hf_round_trip_and_card(run: Path) -> None:
    import datasets
    path = export_run(run, "hf")
    assert path == run / "export" / "hf"
    dataset = datasets.load_from_disk(str(path))
    assert dataset.num_rows == N
    assert dataset[FULL_INDEX] == FULL
    assert dataset[0]["messages"] == RECORDS[0]["messages"]
    card = (path / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---")[1])
    assert front["task_categories"] == ["text-generation"]
    assert front["size_categories"] == ["n<1K"] and "synthetic" in front["tags"]
    for skill in SKILLS:
        count = sum(r.get("skill") == skill for r in RECORDS)
        assert f"| {skill} | {count:,} |" in card
    assert f"| (none) | {sum('skill' not in r for r in RECORDS)} |" in card
    assert f"**{N}**" in card and "gpt-4o-mini" in card and "local-llama" in card
    tokens = sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in RECORDS)
    assert f"{tokens:,}" in card
    assert "`reading_comprehension`" in card and "refine_rounds 2" in card
    assert "`answer` uses model `local-llama`" in card
    for secret in ("SECRET_KEY_VAR", "org-hidden-value", "X-Org", "127.0.0.1"):
        assert secret not in card
    # exporting again replaces the earlier export
    assert datasets.load_from_disk(str(export_run(run, "hf"))).num_rows == N


def test_hf_refuses_to_replace_an_unrelated_folder(run: Path) -> None:
    out = run / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier hf export"):
        export_run(run, "hf", out=out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_sharegpt(run: Path) -> None:
    lines = read_jsonl(export_run(run, "sharegpt"))
    assert len(lines) == N
    for src, line in zip(RECORDS, lines):
        assert line["id"] == src["id"]
        want = [{"from": {"system": "system", "user": "human", "assistant": "gpt"}[m["role"]],
                 "value": m["content"]} for m in src["messages"]]
        assert line["conversations"] == want
        assert line.get("skill") == src.get("skill") and line.get("type") == src.get("type")
        assert set(line) <= {"id", "conversations", "skill", "type"}


def test_openai(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "train.jsonl"
    assert export_run(run, "openai", out=out) == out
    lines = read_jsonl(out)
    assert len(lines) == N
    for src, line in zip(RECORDS, lines):
        assert list(line) == ["messages"]
        assert line["messages"] == src["messages"]


def test_dataset_jsonl_is_preferred(run: Path) -> None:
    write_jsonl(run / "dataset.jsonl", RECORDS[:7], torn=False)
    said: list[str] = []
    assert len(read_jsonl(export_run(run, "openai", say=said.append))) == 7
    assert "dataset.jsonl" in said[0]


def test_explicit_input(run: Path, tmp_path: Path) -> None:
    other = tmp_path / "picked.jsonl"
    write_jsonl(other, RECORDS[:3], torn=False)
    assert len(read_jsonl(export_run(run, "sharegpt", input_file=other))) == 3


def test_errors(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown export format 'csv'"):
        export_run(run, "csv")
    with pytest.raises(ConfigError, match="no dataset.jsonl or output.jsonl"):
        export_run(tmp_path / "empty-run", "parquet")
    with pytest.raises(ConfigError, match="not a file"):
        export_run(run, "parquet", input_file=tmp_path / "missing.jsonl")
    empty = tmp_path / "torn-only.jsonl"
    empty.write_bytes(b'{"id": "x", "mess')
    for fmt in EXPORT_FORMATS:
        with pytest.raises(ConfigError, match="no readable records"):
            export_run(run, fmt, input_file=empty)
    assert not (run / "export" / "hf").exists()
