"""`gristmill labels export RUN`: the labels in force (or with --all every label) as JSONL,
each with its record's skill and type, from the command as a real process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import orjson

from gristmill.flywheel.labels import LabelStore

from .conversation_records import dialogue, plain
from .test_durability import GRISTMILL


def export(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([*GRISTMILL, "labels", "export", *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def rows(text: str) -> list[tuple]:
    return [(r["record_id"], r["criterion"], r["passed"], r["critique"], r["time"], r["skill"],
             r["type"]) for r in map(json.loads, text.splitlines())]


def test_current_labels_and_the_whole_history(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    rejected = plain("plain-2", skill="rag")
    (run / "output.jsonl").write_bytes(orjson.dumps(plain("plain-1")) + b"\n"
                                       + orjson.dumps(dialogue("talk-1")) + b"\n")
    (run / "rejects.jsonl").write_bytes(orjson.dumps({"stage": "judge", "validator": "judge",
                                                      "record": rejected}) + b"\n")
    with LabelStore(run / "run.sqlite") as store:
        store.add("plain-1", False, "vague", at=1.0, reviewer="ana")
        store.add("talk-1", False, criterion="coherent", at=2.0)
        store.add("plain-1", True, "fine after all", at=3.0)
        store.add("plain-2", True, criterion="faithful", at=4.0)
        store.add("gone-1", False, at=5.0)  # a record the run no longer has
        store.add("talk-1", True, criterion="coherent", at=6.0)

    current = export(str(run)).stdout
    assert rows(current) == [
        ("plain-1", None, True, "fine after all", 3.0, "open_domain_qa", "booking"),
        ("plain-2", "faithful", True, "", 4.0, "rag", "booking"),
        ("gone-1", None, False, "", 5.0, None, None),
        ("talk-1", "coherent", True, "", 6.0, "multi_turn", "booking")]
    assert json.loads(current.splitlines()[0])["reviewer"] == ""

    out = tmp_path / "all.jsonl"
    said = export(str(run), "--all", "--out", str(out)).stdout
    assert f"wrote 6 label(s) to {out}" in said
    history = rows(out.read_text())
    assert [(r[0], r[1], r[2], r[4]) for r in history] == [
        ("plain-1", None, False, 1.0), ("talk-1", "coherent", False, 2.0),
        ("plain-1", None, True, 3.0), ("plain-2", "faithful", True, 4.0),
        ("gone-1", None, False, 5.0), ("talk-1", "coherent", True, 6.0)]
    assert json.loads(out.read_text().splitlines()[0])["reviewer"] == "ana"


def test_a_run_without_labels_exports_nothing_and_a_non_run_is_refused(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "output.jsonl").write_bytes(orjson.dumps(plain("plain-1")) + b"\n")
    assert export(str(run)).stdout == ""
    assert not (run / "run.sqlite").exists()  # exporting creates nothing
    refused = subprocess.run([*GRISTMILL, "labels", "export", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "no output.jsonl" in refused.stderr
