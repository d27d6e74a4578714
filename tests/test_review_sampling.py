"""What the review page shows next: filters, sampling modes, progress, and the record index
(plain functions and files, no server)."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter

import pytest

from gristmill.flywheel.labels import Label
from gristmill.flywheel.review_index import RecordIndex, judge_fields
from gristmill.flywheel.review_pool import RecordMeta, RecordPool, rank_of
from gristmill.flywheel.review_sampling import (LabelView, Query, facets, matches, next_record,
                                                progress)


def meta(i: int, skill: str = "qa", type_: str = "t", judge: bool | None = None,
         split: bool = False) -> RecordMeta:
    return RecordMeta(f"r{i:03d}", i * 100, rank_of(f"r{i:03d}", 0), skill, type_, judge, split)


def ranked(metas: list[RecordMeta]) -> RecordPool:
    return RecordPool(metas)


def view(*labels: tuple[str, bool]) -> LabelView:
    return LabelView.of(Label(rid, "", passed, "", "", at) for at, (rid, passed)
                        in enumerate(labels))


def walk(metas: RecordPool, query: Query, labels: list[tuple[str, bool]] | None = None,
         passed: bool = True) -> list[str]:
    """Label whatever the page shows next until nothing is left; the ids in order."""
    labels = list(labels or [])
    shown = []
    while (m := next_record(metas, query, view(*labels))) is not None:
        shown.append(m.id)
        labels.append((m.id, passed))
        assert len(shown) <= 2 * len(metas), "the walk does not end"
    return shown


def test_judge_fields_overall_and_split():
    assert judge_fields({}) == (None, False)
    assert judge_fields({"judge": {"passed": "yes"}}) == (None, False)
    both = {"a": {"passed": True}, "b": {"passed": False}}
    assert judge_fields({"judge": {"passed": False, "criteria": both}}) == (False, True)
    assert judge_fields({"judge": {"passed": True, "criteria": {"a": {"passed": True}}}}) == \
        (True, False)


def test_random_mode_is_seeded_and_skips_labelled_records():
    metas = ranked([meta(i) for i in range(20)])
    order = walk(metas, Query())
    assert order == [m.id for m in metas.metas]  # the seeded order, each once
    assert order != sorted(order)
    assert next_record(metas, Query(), view((order[0], True))).id == order[1]
    assert next_record(metas, Query(skip=frozenset(order[:2])), view()).id == order[2]
    other = sorted(metas.metas, key=lambda m: rank_of(m.id, 1))
    assert [m.id for m in other] != order  # another seed, another order


def test_stratified_mode_balances_labels_across_skill_and_type():
    metas = ranked([meta(i, skill="a", type_="x") for i in range(30)] +
                   [meta(100 + i, skill="b", type_="y") for i in range(5)] +
                   [meta(200 + i, skill="b", type_="z") for i in range(5)])
    strata = {m.id: (m.skill, m.type) for m in metas.metas}
    first = walk(metas, Query("stratified"))[:15]
    assert Counter(strata[i] for i in first) == {("a", "x"): 5, ("b", "y"): 5, ("b", "z"): 5}
    # labels given in another mode count too: the stratum with fewest labels goes first
    already = [(m.id, True) for m in metas.metas if m.skill == "a"][:3]
    nxt = next_record(metas, Query("stratified"), view(*already))
    assert (nxt.skill, nxt.type) == ("b", "y")


def test_judge_failed_and_split_modes_sample_only_their_records():
    metas = ranked([meta(i, judge=i % 3 != 0, split=i % 5 == 0) for i in range(30)])
    assert set(walk(metas, Query("judge_failed"))) == \
        {m.id for m in metas.metas if m.judge is False}
    assert set(walk(metas, Query("split"))) == {m.id for m in metas.metas if m.split}


def test_disagreement_mode_gives_each_disagreement_one_second_look():
    metas = ranked([meta(i, judge=True) for i in range(6)])
    labels = [(m.id, i % 2 == 0) for i, m in enumerate(metas.metas)]  # three humans say fail
    disagreeing = {m.id for i, m in enumerate(metas.metas) if i % 2}
    looked = walk(metas, Query("disagreement"), labels, passed=False)  # each label confirmed
    assert set(looked) == disagreeing and len(looked) == 3
    # a second look that sides with the judge ends the disagreement too
    assert walk(metas, Query("disagreement"), labels, passed=True) == looked
    # the disagreement filter combines with another mode
    q = Query("random", disagreement=True)
    assert next_record(metas, q, view(*labels)).id == looked[0]


def test_filters_skill_type_and_judge():
    metas = ranked([meta(i, skill="ab"[i % 2], type_="xyz"[i % 3],
                         judge=(None, True, False)[i % 3]) for i in range(30)])
    none = view()
    for q, keep in [(Query(skill="a"), lambda m: m.skill == "a"),
                    (Query(type="y"), lambda m: m.type == "y"),
                    (Query(judge="pass"), lambda m: m.judge is True),
                    (Query(judge="fail"), lambda m: m.judge is False),
                    (Query(judge="none"), lambda m: m.judge is None),
                    (Query(skill="b", judge="fail"), lambda m: m.skill == "b" and m.judge is False)]:
        kept = {m.id for m in metas.metas if keep(m)}
        assert {m.id for m in metas.metas if matches(m, q, none)} == kept
        assert set(walk(metas, q)) == kept
        assert progress(metas, q, none)["matching"] == len(kept)


def test_query_parse_names_the_bad_parameter():
    q = Query.parse({"mode": "split", "skill": "qa", "judge": "fail", "disagreement": "1",
                     "skip": "a,b"})
    assert q == Query("split", "qa", "", "fail", True, frozenset({"a", "b"}))
    with pytest.raises(ValueError, match="mode must be one of"):
        Query.parse({"mode": "everything"})
    with pytest.raises(ValueError, match="judge must be"):
        Query.parse({"judge": "maybe"})


def test_progress_and_facets():
    metas = ranked([meta(i, skill="ab"[i % 2], judge=i % 2 == 0) for i in range(10)])
    a, b = metas.metas[:2]
    labels = view((a.id, a.judge), (b.id, not b.judge), (b.id, not b.judge))  # b relabelled
    p = progress(metas, Query(skill=b.skill), labels)
    assert p["records"] == 10 and p["labelled"] == 2 and p["judged"] == 10
    assert p["disagreements"] == 1 and p["human_passed"] + p["human_failed"] == 2
    assert p["matching"] == 5 and p["matching_labelled"] == 1 and p["pending"] == 4
    skipped = next(m for m in metas.metas if m.skill == b.skill and m.id != b.id)
    assert progress(metas, Query(skill=b.skill, skip=frozenset({skipped.id})),
                    labels)["pending"] == 3
    d = progress(metas, Query("disagreement"), labels)
    assert d["matching"] == 1 and d["pending"] == 0  # b had its second look
    assert facets(metas) == {"skills": ["a", "b"], "types": ["t"], "judged": True,
                             "modes": ["random", "stratified", "judge_failed", "split",
                                       "disagreement"]}


def test_the_index_follows_a_growing_file_and_reads_records_at_their_offsets(tmp_path):
    out = tmp_path / "output.jsonl"
    lines = [json.dumps({"id": f"id{i}", "seed_id": "s", "skill": "qa", "messages": [],
                         "judge": {"passed": i % 2 == 0}}) for i in range(5)]
    out.write_text("\n".join(lines[:3]) + "\nnot json\n" + lines[3][:10])  # a torn last line
    index = RecordIndex(tmp_path)
    assert sorted(index.pool.by_id) == ["id0", "id1", "id2"] and index._records.malformed == 1
    with out.open("a") as fh:
        fh.write(lines[3][10:] + "\n" + lines[4] + "\n")
    index.refresh()
    by_id = index.pool.by_id
    assert sorted(by_id) == ["id0", "id1", "id2", "id3", "id4"]
    assert [m.rank for m in index.pool.metas] == sorted(m.rank for m in index.pool.metas)
    assert index.record(by_id["id3"])["id"] == "id3"
    assert by_id["id4"].judge is True and by_id["id4"].in_dataset is None
    (tmp_path / "dataset.jsonl").write_text(lines[0] + "\n")
    index.refresh()
    assert [m.id for m in index.pool.metas if m.in_dataset] == ["id0"]
    assert index.seed_excerpt("s") is None  # no run.sqlite: no seed text, no error


def test_the_index_keeps_a_few_hundred_bytes_per_record(tmp_path):
    n = 20_000
    with (tmp_path / "output.jsonl").open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"{i:016x}", "skill": "qa", "type": "t",
                                 "messages": [{"role": "user", "content": "x" * 2000}]}) + "\n")
    tracemalloc.start()
    index = RecordIndex(tmp_path)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(index.pool) == n
    assert used / n < 400, f"{used / n:.0f} bytes per record"
