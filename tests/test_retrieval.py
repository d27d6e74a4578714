"""Retrieval over the seed corpus: the index is deterministic (the same bytes from the same
corpus, ties ranked by seed id), finds the seed that holds a query's word, draws distractors
that repeat per item and never repeat a passage; a run with configs/rag.yaml on the mock
server names its passages in each record's lineage; a resume loads the index it built and
refuses a changed corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gristmill.config.load import load_config, validate_config
from gristmill.config.retrieval import RetrievalConfig, RetrieveConfig
from gristmill.errors import ConfigError
from gristmill.flows.items import Item
from gristmill.retrieval.build import build_index
from gristmill.retrieval.corpus import read_corpus
from gristmill.retrieval.index import PassageIndex
from gristmill.retrieval.ranking import ranked
from gristmill.retrieval.stage import Retrieval
from gristmill.runs.dry_run import staged_plan
from gristmill.runs.options import RunOptions
from gristmill.runs.runner import run
from gristmill.seeds.report import Seed
from tests.conftest import ROOT, pipeline_config

WORDS = ("river mill wheel grain flour water stone miller village market bread harvest "
         "season weather field barley oven baker canal bridge").split()
SETTINGS = RetrievalConfig()


def corpus_seeds(n: int = 60) -> list[Seed]:
    """Passages of a small vocabulary (many share words, so scores tie), one with a word of
    its own."""
    seeds = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(12)]
        if i == 17:
            words[5] = "zeppelin"
        seeds.append(Seed(f"{(i * 2654435761) % 2**64:016x}", " ".join(words), f"doc{i}.txt"))
    return seeds


def built(tmp_path: Path, seeds: list[Seed], name: str = "index") -> PassageIndex:
    build_index(read_corpus(seeds, SETTINGS, keep=True), SETTINGS, tmp_path / name)
    return PassageIndex(tmp_path / name)


def test_two_builds_write_the_same_files_and_rank_alike(tmp_path):
    seeds = corpus_seeds()
    one = built(tmp_path, seeds, "one")
    other = built(tmp_path, seeds[::-1], "other")  # the input read in another order
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert {"index.json", "ids.npy", "corpus.jsonl", "vocab.index.json",
            "data.csc.index.npy"} <= set(files)
    assert files == sorted(p.name for p in (tmp_path / "other").iterdir())
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "other" / name).read_bytes()
    for query in ("river mill", "grain flour bread", "zeppelin", "nothing shared"):
        rows_a, scores_a = one.search(query, 10)
        rows_b, scores_b = other.search(query, 10)
        assert rows_a.tolist() == rows_b.tolist() and scores_a.tolist() == scores_b.tolist()
    assert one.digest == other.digest


def test_equal_scores_rank_by_seed_id(tmp_path):
    same = "the mill wheel turns on the river"
    seeds = [Seed(f"{i:016x}", same if i % 3 == 0 else f"bread oven baker {i}", "x")
             for i in range(30, 0, -1)]  # read in descending id order
    index = built(tmp_path, seeds)
    rows, scores = index.search("mill wheel", 4)
    assert len(set(scores.tolist())) == 1 and scores[0] > 0  # four equal scores
    ids = [index.passage(int(r))["id"] for r in rows]
    assert ids == sorted(s.id for s in seeds if s.text == same)[:4]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=40), st.integers(0, 45))
def test_ranking_is_score_then_row_order(values, n):
    scores = np.asarray(values, dtype=np.float32)
    expected = sorted(range(len(values)), key=lambda row: (-values[row], row))[:n]
    assert ranked(scores, n).tolist() == expected


def test_a_query_with_a_distinctive_word_finds_its_seed_first(tmp_path):
    seeds = corpus_seeds()
    index = built(tmp_path, seeds)
    rows, scores = index.search("What about the Zeppelin over the village?", 3)
    first = index.passage(int(rows[0]))
    assert first["id"] == seeds[17].id and "zeppelin" in first["text"]
    assert scores[0] > scores[1]
    assert index.row_of(seeds[17].id) == int(rows[0])
    assert index.row_of("not-a-seed-id") is None


def test_distractors_repeat_per_item_and_never_repeat_a_passage(tmp_path):
    seeds = corpus_seeds()
    index = built(tmp_path, seeds)
    config = RetrieveConfig(query="{{ seed }}", k=3, distractors=4, distractor_pool=10)
    retrieval = Retrieval("answer", config, index)
    draws = []
    for seed in seeds[:12]:
        item = Item(seed.id, seed.id, {"seed": seed.text})
        passages, distractors = retrieval.find(seed.text, item)
        assert (passages, distractors) == retrieval.find(seed.text, item)  # again: the same
        passage_ids = [p["id"] for p in passages]
        distractor_ids = [d["id"] for d in distractors]
        assert len(passage_ids) == 3 and len(distractor_ids) == 4
        assert not set(passage_ids) & set(distractor_ids)
        assert seed.id not in passage_ids + distractor_ids  # exclude_self
        rows, _ = index.search(seed.text, 13, index.row_of(seed.id))
        ranked_ids = [index.passage(int(r))["id"] for r in rows]
        assert passage_ids == ranked_ids[:3] and set(distractor_ids) <= set(ranked_ids[3:])
        draws.append(distractor_ids)
    assert len({tuple(sorted(d)) for d in draws}) > 1  # items draw different ones
    with_self = Retrieval("answer", config.model_copy(update={"exclude_self": False}), index)
    item = Item(seeds[17].id, seeds[17].id, {})
    assert with_self.find("zeppelin", item)[0][0]["id"] == seeds[17].id


async def test_a_retrieving_stage_adds_passages_to_values_and_lineage(tmp_path):
    seeds = corpus_seeds()
    index = built(tmp_path, seeds)
    retrieval = Retrieval("answer", RetrieveConfig(query="{{ question }}", k=2, distractors=1),
                          index)
    item = Item("i1", seeds[0].id, {"seed": seeds[0].text, "question": "zeppelin?"},
                [(seeds[0].id, "seed")])
    found = await retrieval(item)
    assert found.values["passages"][0]["id"] == seeds[17].id
    assert found.lineage == item.lineage + [
        (p["id"], "answer.passage") for p in found.values["passages"]] + [
        (d["id"], "answer.distractor") for d in found.values["distractors"]]
    assert "passages" not in item.values  # the item it was given is unchanged


def rag_config(base_url: str, *overrides: str):
    return load_config(ROOT / "configs" / "rag.yaml",
                       [f"backends.default.base_url={base_url}", *overrides])


def test_retrieve_without_retrieval_is_a_config_error_that_names_it(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["stages"][0]["retrieve"] = {"k": 2}
    with pytest.raises(ConfigError, match=r"stages\[0\]\.retrieve: .*add a top-level "
                                          r"`retrieval: \{\}`"):
        validate_config(data)
    data["retrieval"] = {}
    data["stages"][0]["retrieve"]["query"] = "{{ answer1 }}"  # not known before the stage
    with pytest.raises(ConfigError, match=r"stages\[0\]\.retrieve\.query: unknown .*answer1"):
        validate_config(data)
    del data["stages"][0]["retrieve"]
    data["stages"][1]["prompt"] = "{{ passages }}"  # no stage retrieved them
    with pytest.raises(ConfigError, match=r"stages\[1\]\.prompt: unknown .*passages"):
        validate_config(data)
    data["stages"][0]["name"] = "passages"
    with pytest.raises(ConfigError, match="'passages' is reserved"):
        validate_config(data)


def test_a_dry_run_shows_where_passages_go():
    plan = staged_plan(rag_config("http://127.0.0.1:9/v1"), limit=1, show=1)
    answer = next(p for p in plan["prompts"] if p["stage"] == "answer")
    assert "<retrieved passage>" in answer["prompt"]
    assert "<retrieved distractor>" in answer["prompt"]


def seed_texts(run_dir: Path) -> dict[str, str]:
    return {row["id"]: row["text"] for row in map(orjson.loads, (
        run_dir / "retrieval" / "corpus.jsonl").read_bytes().splitlines())}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_rag_run_names_its_passages_in_each_record(mock_server, tmp_path, stream):
    config = rag_config(mock_server.base_url, f"stages.answer.stream={str(stream).lower()}")
    summary = await run(config, RunOptions(run_dir=tmp_path / "run", progress=False))
    records = [orjson.loads(line) for line in
               (tmp_path / "run" / "output.jsonl").read_bytes().splitlines()]
    assert summary["records"] == len(records) > 0
    corpus = seed_texts(tmp_path / "run")
    assert len(corpus) == 5  # the demo seeds
    supported = 0
    for record in records:
        named = [e for e in record["lineage"] if e["stage"].startswith("answer.")]
        passages = [e["id"] for e in named if e["stage"] == "answer.passage"]
        distractors = [e["id"] for e in named if e["stage"] == "answer.distractor"]
        assert len(passages) <= 2 and len(distractors) == 1  # passages: those sharing a word
        assert not set(passages) & set(distractors)
        for passage_id in passages + distractors:  # the record's context is those passages
            assert f"[{passage_id}] {corpus[passage_id]}" in record["messages"][0]["content"]
        supported += bool(passages)
    assert supported > len(records) // 2  # most mock questions share a word with a seed
    manifest = orjson.loads((tmp_path / "run" / "manifest.json").read_bytes())
    assert manifest["retrieval"]["digest"] == PassageIndex(tmp_path / "run" / "retrieval").digest


def stamps(where: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in where.iterdir()}


async def test_a_resume_loads_the_index_and_refuses_a_changed_corpus(mock_server, tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for i, seed in enumerate(corpus_seeds(12)):
        (seeds / f"doc{i:02d}.txt").write_text(seed.text + ".")
    config = rag_config(mock_server.base_url, f"seeds.path={seeds}", "seeds.min_chars=10")
    run_dir = tmp_path / "run"
    await run(config, RunOptions(run_dir=run_dir, progress=False, limit=4))
    index_dir = run_dir / "retrieval"
    before = stamps(index_dir)
    assert orjson.loads((index_dir / "index.json").read_bytes())["passages"] == 12
    summary = await run(config, RunOptions(run_dir=run_dir, progress=False, limit=8))
    assert summary["stop_reason"] == "limit"
    assert stamps(index_dir) == before  # loaded, not built again
    (seeds / "doc03.txt").write_text("A new passage about airships and the zeppelin.")
    with pytest.raises(ConfigError, match="different retrieval corpus.*--force"):
        await run(config, RunOptions(run_dir=run_dir, progress=False))
    assert stamps(index_dir) == before
    await run(config, RunOptions(run_dir=run_dir, progress=False, force=True))
    rebuilt = PassageIndex(index_dir)
    assert stamps(index_dir) != before and "zeppelin" in str(seed_texts(run_dir).values())
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["retrieval"]["digest"] == rebuilt.digest


async def test_a_run_without_retrieval_builds_no_index(mock_server, tmp_path):
    config = validate_config(pipeline_config(mock_server.base_url, tmp_path, seeds=2))
    await run(config, RunOptions(run_dir=tmp_path / "run", progress=False))
    assert not (tmp_path / "run" / "retrieval").exists()
    assert orjson.loads((tmp_path / "run" / "manifest.json").read_bytes())["retrieval"] is None
