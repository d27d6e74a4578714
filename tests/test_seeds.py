"""Seed collection (engine/seeds): config, cleaning, chunking, ids, dedup, broken input, and
memory that stays flat over a million seeds (the readers: test_seed_readers.py; the digest
filter itself: test_digest_set.py). All inputs are generated in tmp_path."""

from __future__ import annotations

import gc
import itertools
import json
import random
import shutil
import sys
import time
import tracemalloc
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError

from gristmill.errors import ConfigError
from gristmill.seeds import SeedReport, SeedSource, SeedsConfig
from gristmill.seeds.chunk import REFINE, chunk_units, paragraphs
from gristmill.seeds.clean import clean_code, clean_prose
from gristmill.scheduling.tokens import estimate_tokens
from tests.seed_support import PY_CODE, collect, document, paragraph, sentence, source


# --- config ---------------------------------------------------------------------------

def test_config_defaults_and_bounds(tmp_path):
    config = SeedsConfig(path=tmp_path)
    assert (config.format, config.field, config.min_chars, config.dedup, config.hf_split) == (
        "auto", "text", 300, True, "train")
    assert (config.chunk.max_tokens, config.chunk.overlap_tokens) == (512, 64)
    assert config.code.languages == "all" and config.code.max_file_bytes == 200_000
    assert "node_modules" in config.code.skip_dirs
    with pytest.raises(ValidationError, match=r"overlap_tokens \(64\) must be smaller than "
                       r"max_tokens \(64\)"):
        SeedsConfig(path=tmp_path, chunk={"max_tokens": 64, "overlap_tokens": 64})
    with pytest.raises(ValidationError, match="greater than or equal to 32"):
        SeedsConfig(path=tmp_path, chunk={"max_tokens": 16, "overlap_tokens": 0})
    with pytest.raises(ValidationError, match="unknown language 'cobol'"):
        SeedsConfig(path=tmp_path, code={"languages": ["cobol"]})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SeedsConfig(path=tmp_path, colour="blue")
    assert SeedsConfig(path=tmp_path, code={"languages": ["C++", "py"]}).code.languages == [
        "cpp", "python"]


def test_config_paths_resolve_against_the_config_folder(tmp_path):
    config = SeedsConfig.model_validate({"path": ["a", "b/c.jsonl"]},
                                        context={"base_dir": tmp_path})
    assert config.paths == [(tmp_path / "a").resolve(), (tmp_path / "b/c.jsonl").resolve()]
    assert SeedsConfig(path=tmp_path).paths == [tmp_path]


def test_missing_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        list(source(tmp_path / "nope"))
    assert source(tmp_path / "nope").count_files() is None


# --- cleaning ---------------------------------------------------------------------------

def test_cleaning_drops_boilerplate_and_keeps_paragraphs():
    raw = ("Skip to content\nHome | About | Contact\n\n\n#  The   Mill\n\n"
           "Water\tturns  the wheel.   \nThe wheel turns the stone.\n\n\n\n"
           "Flour falls into the sack.\nShare on Facebook\nPage 3 of 10\n12\n\n"
           "| Grain | Yield | Home |\n| Barley | 3 | About |\n\n"
           "Subscribe to our newsletter\nWe use cookies to improve your experience.\n"
           "© 2024 Mill Co. All rights reserved.\n\ncafe\u0301 au lait\n\n"
           "```\ndef f():\n    return   1\n```\n")
    assert clean_prose(raw) == (
        "# The Mill\n\nWater turns the wheel.\nThe wheel turns the stone.\n\n"
        "Flour falls into the sack.\n\n| Grain | Yield | Home |\n| Barley | 3 | About |\n\n"
        "caf\u00e9 au lait\n\n```\ndef f():\n    return   1\n```")


def test_cleaning_keeps_prose_that_mentions_boilerplate_words():
    text = ("Browsers store cookies so a site remembers you.\n\nThe miller would subscribe "
            "to the guild's rules.\n\nShare the grain fairly among the farmers of the valley, "
            "the old law said, and keep one sack in ten for the mill itself.")
    assert clean_prose(text) == text


def test_code_cleaning_only_normalises_line_ends_and_trailing_space():
    raw = "\n\ndef f():\r\n\tx  =  1   \r\n\treturn x\x0cx\n\n"
    assert clean_code(raw) == "def f():\n\tx  =  1\n\treturn x\x0cx"  # no split at \\f


def test_300_character_paragraph_is_kept_and_299_dropped(tmp_path):
    text = ("The mill stands by the river. " * 10).strip() + "!"
    assert len(text) == 300
    (tmp_path / "keep.txt").write_text(text)
    (tmp_path / "short.txt").write_text(text[:299])
    src = SeedSource(SeedsConfig(path=tmp_path))  # default min_chars: 300
    assert [s.text for s in src] == [text]
    assert src.report.counts["too_short"] == 1


# --- chunking ---------------------------------------------------------------------------

def spans(text: str, chunks: list[str]) -> list[tuple[int, int]]:
    """Where each chunk sits in `text`, searching forward (chunks are verbatim slices)."""
    out, start = [], 0
    for chunk in chunks:
        at = text.find(chunk, start)
        assert at >= 0, f"chunk is not a slice of the text: {chunk[:60]!r}"
        out.append((at, at + len(chunk)))
        start = at + 1
    return out


@pytest.mark.parametrize("count", [estimate_tokens, lambda t: len(t.split())],
                         ids=["estimate", "words"])
def test_chunks_fit_overlap_and_cover_the_text(tmp_path, count):
    rng = random.Random(9)
    blob = "".join(rng.choice("0123456789abcdef") for _ in range(5000))
    text = document(7, 40) + "\n\n" + blob + "\n\n" + document(8, 5)  # blob: no spaces
    (tmp_path / "doc.md").write_text(text)
    config = SeedsConfig(path=tmp_path, min_chars=0, chunk={"max_tokens": 96,
                                                            "overlap_tokens": 24})
    chunks = [s.text for s in SeedSource(config, count=count)]
    assert len(chunks) > 10
    assert all(count(c) <= 96 for c in chunks)
    where = spans(text, chunks)
    assert where[0][0] == 0 and where[-1][1] == len(text)
    for (a0, a1), (b0, b1) in zip(where, where[1:]):
        assert not text[a1:b0].strip(), "text between chunks"  # reassembly covers the text
        assert b1 > a1, "a chunk with no new text"
    blob_at = text.index(blob)
    for (_, a1), (b0, _) in zip(where, where[1:]):
        # Overlap everywhere, except after full chunks cut from the blob by characters.
        assert b0 < a1 or blob_at - 2 <= a1 <= blob_at + len(blob)


def test_paragraphs_that_fit_are_not_split():
    rng = random.Random(3)
    paras = [paragraph(rng, 2) for _ in range(30)]
    text = "\n\n".join(paras)
    chunks = list(chunk_units(paragraphs(text), REFINE["prose"], 128, 0, estimate_tokens))
    assert all(estimate_tokens(c) <= 128 for c in chunks)
    assert [p for c in chunks for p in c.split("\n\n")] == paras  # whole, in order, no overlap


def test_overlap_prefers_whole_sentences():
    rng = random.Random(5)
    text = " ".join(sentence(rng, 8) for _ in range(60))  # one long paragraph
    chunks = list(chunk_units(paragraphs(text), REFINE["prose"], 64, 20, estimate_tokens))
    for chunk in chunks:
        assert chunk[0].isupper() and chunk.endswith(".")  # starts and ends on sentences
    assert all(estimate_tokens(c) <= 64 for c in chunks)


def test_code_keeps_top_level_definitions_whole(tmp_path):
    funcs = [f"def step_{i}(grain):\n    total = grain * {i}\n\n    return total + {i}\n"
             for i in range(30)]
    (tmp_path / "steps.py").write_text("\n\n".join(funcs))
    src = source(tmp_path, chunk={"max_tokens": 64, "overlap_tokens": 0})
    chunks = [s.text for s in src]
    assert len(chunks) > 3 and all(estimate_tokens(c) <= 64 for c in chunks)
    assert [f.rstrip() for c in chunks for f in c.split("\n\n\n")] == [f.rstrip() for f in funcs]


def test_short_document_is_one_chunk(tmp_path):
    (tmp_path / "a.txt").write_text("Para one.\n\nPara two.\n\nPara three.")
    assert [s.text for s in source(tmp_path)] == ["Para one.\n\nPara two.\n\nPara three."]


# --- ids and dedup ----------------------------------------------------------------------

def make_corpus(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text(document(11, 20))
    (root / "sub" / "b.txt").write_text(document(12, 20))
    (root / "sub" / "c.py").write_text(PY_CODE)


def test_ids_are_stable_across_runs_and_root_moves_and_change_with_content(tmp_path):
    make_corpus(tmp_path / "one")
    options = {"chunk": {"max_tokens": 128, "overlap_tokens": 16}}
    first = [s.id for s in source(tmp_path / "one", **options)]
    assert len(first) > 5 and len(set(first)) == len(first)
    assert [s.id for s in source(tmp_path / "one", **options)] == first
    shutil.move(tmp_path / "one", tmp_path / "elsewhere")
    moved = source(tmp_path / "elsewhere", **options)
    assert [s.id for s in moved] == first
    (tmp_path / "elsewhere" / "sub" / "c.py").write_text(PY_CODE.replace("* 2", "* 3"))
    changed = [s.id for s in moved]
    assert changed[:-1] == first[:-1] and changed[-1] != first[-1]


def test_same_text_in_two_files_gets_two_ids_without_dedup(tmp_path):
    (tmp_path / "a.txt").write_text("same words")
    (tmp_path / "b.txt").write_text("same words")
    seeds = collect(source(tmp_path, dedup=False))
    assert len({s.id for s in seeds}) == 2


def test_exact_duplicates_are_removed_and_counted(tmp_path):
    rows = ["alpha seed", "beta seed", "alpha seed", "gamma seed", "beta seed"]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in rows))
    (tmp_path / "copy.txt").write_text("gamma seed")
    src = source(tmp_path)
    assert [s.text for s in src] == ["gamma seed", "alpha seed", "beta seed"]  # sorted paths
    assert src.report.counts["duplicate"] == 3
    assert len(collect(source(tmp_path, dedup=False))) == 6


# --- broken input -----------------------------------------------------------------------

def test_broken_files_are_reported_with_paths_and_the_run_goes_on(tmp_path, caplog,
                                                                  monkeypatch):
    good = document(21, 2)
    (tmp_path / "1_good.txt").write_text(good)
    (tmp_path / "2_latin1.txt").write_bytes("Café crème, naïve façade.".encode("latin-1"))
    (tmp_path / "3_utf16.md").write_text("hello", encoding="utf-16")
    (tmp_path / "4_empty.md").write_bytes(b"")
    (tmp_path / "5_binary.txt").write_bytes(b"GIF89a\0\0\1\2")
    (tmp_path / "6_bom.txt").write_bytes(b"\xef\xbb\xbfWith a BOM.")
    (tmp_path / "7_blank.txt").write_text("   \n\n\t\n")
    (tmp_path / "8_nav.md").write_text("Home | About | Contact\nSkip to content\n")
    (tmp_path / "9_bad.jsonl").write_bytes(b'{"text": "ok"}\n{oops\n')
    (tmp_path / "90_locked.txt").write_text("secret")
    read_bytes = Path.read_bytes

    def locked(path: Path) -> bytes:  # chmod 000 does not stop root, so simulate EACCES
        if path.name == "90_locked.txt":
            raise PermissionError(13, "Permission denied")
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", locked)
    with caplog.at_level("WARNING", logger="gristmill.seeds"):
        src = source(tmp_path)
        texts = [s.text for s in src]
    assert texts == [good, "With a BOM.", "ok"]
    got = {(Path(p).name, reason) for p, reason, _ in src.report.problems}
    expected = {("2_latin1.txt", "bad_encoding"), ("3_utf16.md", "bad_encoding"),
                ("4_empty.md", "empty"), ("5_binary.txt", "binary"),
                ("7_blank.txt", "empty"), ("8_nav.md", "empty"), ("9_bad.jsonl:2", "bad_json"),
                ("90_locked.txt", "unreadable")}
    assert got == expected
    assert all(str(tmp_path) in p for p, _, _ in src.report.problems)
    assert "2_latin1.txt: bad_encoding" in caplog.text
    summary = src.report.summary()
    assert summary["seeds"] == 3 and summary["problems"] == len(expected)
    assert summary["skipped"]["bad_encoding"] == 2


def test_problem_list_and_log_are_capped_but_counts_are_not(caplog):
    report = SeedReport(max_problems=3)
    with caplog.at_level("WARNING", logger="gristmill.seeds"):
        for i in range(10):
            report.problem(f"f:{i}", "bad_json", "x")
    assert len(report.problems) == 3 and report.counts["bad_json"] == 10
    assert report.summary()["problems"] == 10 and report.summary()["problems_listed"] == 3
    assert len(caplog.records) == 4 and "further ones are counted" in caplog.records[-1].message


def test_empty_records_and_empty_code_files_are_counted_quietly(tmp_path, caplog):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "rows.jsonl").write_text('{"text": ""}\n{"text": "  "}\n{"text": "kept"}\n')
    with caplog.at_level("WARNING", logger="gristmill.seeds"):
        src = source(tmp_path)
        assert [s.text for s in src] == ["kept"]
    assert src.report.counts["empty"] == 3 and src.report.problems == [] and not caplog.records


def test_large_text_file_streams_and_bad_utf8_late_in_it_is_refused(tmp_path, monkeypatch):
    import gristmill.seeds.readers as readers

    monkeypatch.setattr(readers, "STREAM_BYTES", 1000)
    text = document(31, 60)
    (tmp_path / "big.txt").write_text(text)
    chunks = [s.text for s in source(tmp_path / "big.txt", chunk={"max_tokens": 200,
                                                                  "overlap_tokens": 0})]
    assert "\n\n".join(chunks) == text
    (tmp_path / "big.txt").write_bytes(text.encode() + b"\xff tail")
    src = source(tmp_path / "big.txt")
    assert collect(src) == [] and src.report.counts["bad_encoding"] == 1


# --- the whole source -------------------------------------------------------------------

def test_source_is_re_iterable_and_report_is_per_pass(tmp_path):
    make_corpus(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n{bad\n')
    src = source(tmp_path)
    first = [(s.id, s.text) for s in src]
    assert [(s.id, s.text) for s in src] == first
    assert src.report.counts["bad_json"] == 1 and src.skipped is src.report.counts


def test_list_of_paths(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("one")
    (tmp_path / "two.jsonl").write_text('{"text": "two"}\n')
    seeds = collect(source([tmp_path / "two.jsonl", tmp_path / "a"]))
    assert [s.text for s in seeds] == ["two", "one"]


def write_short_jsonl(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for start in range(0, n, 50_000):
            fh.write("".join(f'{{"text": "seed number {i} about the mill"}}\n'
                             for i in range(start, min(n, start + 50_000))))


def test_a_million_jsonl_seeds_stream_in_flat_memory(tmp_path):
    """Tracing a million seeds with tracemalloc would take minutes, so this counts live
    allocator blocks (a leak of one object per seed would add 900,000) and the RSS; the
    tracemalloc test below measures bytes on 100,000 seeds."""
    n = 1_000_000
    write_short_jsonl(tmp_path / "many.jsonl", n)
    src = source(tmp_path / "many.jsonl")
    process = psutil.Process()
    seeds = iter(src)
    warm = sum(1 for _ in itertools.islice(seeds, 100_000))
    gc.collect()
    blocks, rss = sys.getallocatedblocks(), process.memory_info().rss
    grown_blocks = grown_rss = rest = 0
    began = time.perf_counter()
    while batch := sum(1 for _ in itertools.islice(seeds, 100_000)):
        rest += batch
        if batch == 100_000:  # sampled while the source (and its dedup table) is alive
            grown_blocks = max(grown_blocks, sys.getallocatedblocks() - blocks)
            grown_rss = max(grown_rss, process.memory_info().rss - rss)
    elapsed = time.perf_counter() - began
    assert warm + rest == n and src.report.seeds == n
    # the dedup table's newcomers of full buckets are ints: at most 64 + 1/256 of the seeds
    assert grown_blocks < 1000 + n // 256, f"{grown_blocks} more live blocks after {rest} seeds"
    assert grown_rss < 50 * 2**20, f"RSS grew {grown_rss / 2**20:.1f} MB"  # dedup: ~9.5 MB
    print(f"\n{rest / elapsed:,.0f} JSONL seeds/s; RSS +{grown_rss / 2**20:.1f} MB, "
          f"{grown_blocks:+} blocks over {rest:,} seeds")


def test_tracemalloc_peak_while_streaming_jsonl(tmp_path):
    n = 100_000
    write_short_jsonl(tmp_path / "many.jsonl", n)
    src = source(tmp_path / "many.jsonl")
    tracemalloc.start()
    try:
        assert sum(1 for _ in src) == n
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Everything on the heap: one document at a time and the dedup filter's set-aside
    # newcomers (its table is a memory map, not traced), so ~50 bytes per seed at most.
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MB"
