"""Exact and near-duplicate removal: planted duplicates are found, the smallest id of a
cluster is kept, and the dataset file does not depend on the order records were written in."""

from __future__ import annotations

import random
import tracemalloc

import orjson
import pytest

from gristmill.dataset.dedup import Deduper, dedup_records, dedup_run, instruction_text

pytestmark = pytest.mark.timeout(60)

VOCAB = [f"{c}{v}{i}" for i, (c, v) in enumerate(zip("bcdfghklmnprstvz" * 200, "aeiou" * 640))]


def text(rng: random.Random, words: int = 200) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def reword(rng: random.Random, source: str, changes: int) -> str:
    words = source.split()
    for i in rng.sample(range(len(words)), changes):
        words[i] = rng.choice(["river", "mill", "stone", "wheel"])
    return " ".join(words)


def record(rid: str, instruction: str, answer: str = "An answer.") -> dict:
    return {"id": rid, "seed_id": "s", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "ignored"},
        {"role": "assistant", "content": "ignored too"}, {"role": "user", "content": instruction},
        {"role": "assistant", "content": answer}]}


def planted(n: int = 300, seed: int = 1) -> tuple[list[dict], dict[str, str]]:
    """n distinct records plus exact and near copies; expected {dropped id: kept id}."""
    rng = random.Random(seed)
    records = [record(f"r{i:05d}", text(rng)) for i in range(n)]
    expected = {}
    for i in range(0, 60, 3):  # exact copies (case, spacing, punctuation differ): larger ids
        source = instruction_text(records[i])
        copy = "  " + source.upper().replace(" ", " ,  ") + "!"
        records.append(record(f"r{i:05d}~exact", copy))
        expected[f"r{i:05d}~exact"] = f"r{i:05d}"
    for i in range(60, 120, 3):  # near copies with SMALLER ids: they are the ones kept
        source = instruction_text(records[i])
        records.append(record(f"a{i:05d}", reword(rng, source, 2)))
        expected[f"r{i:05d}"] = f"a{i:05d}"
    return records, expected


def test_planted_duplicates_are_found_and_the_smallest_id_kept():
    records, expected = planted()
    result = dedup_records(records)
    assert result.duplicate_of == expected
    assert result.exact_duplicates == 20 and result.near_duplicates == 20
    assert result.stats == {"input": 340, "exact_duplicates": 20, "near_duplicates": 20,
                            "kept": 300}
    assert result.kept == sorted(result.kept) and not set(result.kept) & set(expected)


def test_clusters_and_input_order():
    rng = random.Random(5)
    base = text(rng, 150)
    cluster = [record(rid, reword(rng, base, 1)) for rid in ("m3", "m1", "m2", "m0")]
    cluster.append(record("z9", base.lower()))
    distinct = [record(f"d{i}", text(rng, 150)) for i in range(20)]
    results = []
    for seed in range(3):
        shuffled = cluster + distinct
        random.Random(seed).shuffle(shuffled)
        results.append(dedup_records(shuffled))
    assert all(r.kept == results[0].kept and r.duplicate_of == results[0].duplicate_of
               for r in results)
    assert "m0" in results[0].kept and not {"m1", "m2", "m3", "z9"} & set(results[0].kept)
    # Only kept records absorb others: a record similar to a dropped one alone stays.
    assert dedup_records([record("a", "x " * 3), record("b", "y " * 3)]).kept == ["a", "b"]


def test_threshold_and_short_texts():
    rng = random.Random(2)
    source = text(rng, 100)
    far = reword(rng, source, 5)  # about 0.6 similar
    result = dedup_records([record("1", source), record("2", far)])
    assert result.kept == ["1", "2"]
    loose = dedup_records([record("1", source), record("2", far)], threshold=0.2)
    assert loose.kept == ["1"] and loose.near_duplicates == 1
    short = dedup_records([record("1", "Name a river."), record("2", "name a river"),
                           record("3", "Name a lake."), record("4", "")])
    assert short.kept == ["1", "3", "4"] and short.duplicate_of == {"2": "1"}


def _write_run(path, records, torn: bytes = b"") -> None:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "output.jsonl").open("wb") as out:
        for r in records:
            out.write(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE))
        out.write(torn)


def test_dedup_run_is_byte_identical_whatever_the_order(tmp_path):
    records, expected = planted(200, seed=3)
    outputs = []
    for seed in range(3):
        shuffled = list(records)
        random.Random(seed).shuffle(shuffled)
        run = tmp_path / f"run{seed}"
        _write_run(run, shuffled, torn=b'{"id": "zzz", "messages": [{"ro' if seed else b"")
        stats = dedup_run(run)
        assert stats == {"input": 240, "exact_duplicates": 20, "near_duplicates": 20,
                         "kept": 200, "skipped_lines": 1 if seed else 0}
        assert orjson.loads((run / "dedup.json").read_bytes())["kept"] == 200
        assert not list(run.glob(".*.tmp"))
        outputs.append((run / "dataset.jsonl").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    lines = outputs[0].splitlines()
    ids = [orjson.loads(line)["id"] for line in lines]
    assert ids == sorted(ids) and len(ids) == 200 and not set(ids) & set(expected)
    by_id = {r["id"]: r for r in records}
    assert all(orjson.loads(line) == by_id[i] for line, i in zip(lines, ids))


def test_dedup_run_edge_cases(tmp_path):
    run = tmp_path / "run"
    same = record("b", "the same words here", "first answer")
    _write_run(run, [same, record("a", "other words"), {**same, "messages": same["messages"][:4]
                                                       + [{"role": "assistant", "content": "2"}]}],
               torn=b"\n[1, 2]\nnot json\n")
    stats = dedup_run(run)
    assert stats["kept"] == 2 and stats["exact_duplicates"] == 1 and stats["skipped_lines"] == 3
    text_out = (run / "dataset.jsonl").read_bytes()
    dedup_run(run)  # again: the same bytes (equal ids are ordered by their content)
    assert (run / "dataset.jsonl").read_bytes() == text_out
    empty = tmp_path / "empty"
    _write_run(empty, [])
    assert dedup_run(empty)["kept"] == 0 and (empty / "dataset.jsonl").read_bytes() == b""


def test_memory_per_record_stays_small():
    """The compact state per record: well under 2 KB (1M records in 2 GB)."""
    rng = random.Random(4)
    texts = [text(rng, rng.randint(20, 60)) for _ in range(8192)]
    tracemalloc.start()
    try:
        deduper = Deduper()
        for i, t in enumerate(texts):
            deduper.add(f"{i:016x}", t, i)
        deduper.decide()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / len(texts) < 1600, peak / len(texts)
