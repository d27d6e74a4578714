"""Tables as seeds: CSV/TSV (dialect sniffed) and JSON lines of records rendered as Markdown
in chunks of rows with the header repeated; ragged and malformed rows are counted and
skipped, an empty table is reported. Plus the `kinds` field's checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gristmill.scheduling.tokens import estimate_tokens
from gristmill.seeds import SeedSource, SeedsConfig

TABLES = Path(__file__).resolve().parents[1] / "configs" / "seeds" / "tables"


def tables(path: Path, **options) -> SeedSource:
    options.setdefault("min_chars", 0)
    return SeedSource(SeedsConfig(path=path, kinds=["table"], **options))


def test_shipped_tables_are_sniffed_and_rendered_with_their_header():
    seeds = {Path(s.source.split(":")[0]).name: s for s in tables(TABLES)}
    assert sorted(seeds) == ["city-climate.csv", "library-loans.table.jsonl",
                             "nutrition-facts.table.jsonl", "sales-by-quarter.csv",
                             "train-timetable.tsv"]
    sales = seeds["sales-by-quarter.csv"]  # semicolons, found by the sniffer
    assert sales.kind == "table" and sales.source.endswith("sales-by-quarter.csv:2")
    assert sales.text.splitlines()[:3] == [
        "| product | region | q1_units | q2_units | q3_units | q4_units | unit_price_eur |",
        "|---|---|---|---|---|---|---|",
        "| Rye flour 1 kg | North | 1240 | 980 | 870 | 1510 | 4.20 |"]
    assert seeds["train-timetable.tsv"].extra["table"]["rows"][1] == \
        ["06:48", "Millbrook", "2", "RB 2207", "08:10", "Harrow Hill", "stops everywhere"]
    nutrition = seeds["nutrition-facts.table.jsonl"].extra["table"]
    assert nutrition["columns"][-1] == "gluten_free"  # a key first seen in a later record
    assert nutrition["rows"][0][-1] is None and nutrition["rows"][-1][-1] is True
    assert nutrition["rows"][0][:3] == ["Rye bread", 100, 259]  # JSON values kept as they are


def test_ragged_csv_rows_are_counted_with_their_line_and_skipped(tmp_path):
    (tmp_path / "ragged.csv").write_text(
        "city,rain_mm,sun_days\nLisbon,726,260\nOslo,763\nVienna,651,180,extra\n\n"
        'Seville,534,290\n"Palermo, Sicily",605,250\n')
    src = tables(tmp_path)
    [seed] = src
    assert [row[0] for row in seed.extra["table"]["rows"]] == ["Lisbon", "Seville",
                                                                "Palermo, Sicily"]
    assert [(Path(w).name, r, d) for w, r, d in src.report.problems] == [
        ("ragged.csv:3", "ragged_row", "2 fields, the header has 3"),
        ("ragged.csv:4", "ragged_row", "4 fields, the header has 3")]


def test_bad_records_empty_tables_and_broken_files_are_reported(tmp_path):
    (tmp_path / "a.table.jsonl").write_text(
        '{"x": 1}\nnot json\n[1, 2]\n{}\n{"x": 2, "y": "b"}\n')
    (tmp_path / "b_header_only.csv").write_text("x,y\n")
    (tmp_path / "c_nothing.table.jsonl").write_text("\n\n")
    (tmp_path / "d_binary.csv").write_bytes(b"x,y\n\0\0\0")
    (tmp_path / "e_bad_records.table.jsonl").write_text("oops\n")
    src = tables(tmp_path)
    [seed] = src
    assert seed.extra["table"]["columns"] == ["x", "y"]
    assert seed.extra["table"]["rows"] == [[1, None], [2, "b"]]
    found = [(Path(w).name, r) for w, r, _ in src.report.problems]
    assert found == [("a.table.jsonl:2", "bad_json"), ("a.table.jsonl:3", "not_a_record"),
                     ("a.table.jsonl:4", "not_a_record"), ("b_header_only.csv", "empty"),
                     ("c_nothing.table.jsonl", "empty"), ("d_binary.csv", "binary"),
                     ("e_bad_records.table.jsonl:1", "bad_json"),
                     ("e_bad_records.table.jsonl", "empty")]


def test_a_long_table_is_cut_into_balanced_chunks_within_the_token_budget(tmp_path):
    rows = [f"{i},Station {i},{'x' * (i % 7) * 9}" for i in range(1, 46)]
    (tmp_path / "long.csv").write_text("n,name,note\n" + "\n".join(rows) + "\n")
    seeds = list(tables(tmp_path, table={"rows_per_chunk": 20}))
    sizes = [len(s.extra["table"]["rows"]) for s in seeds]
    assert sizes == [15, 15, 15]  # 45 rows at most 20 a chunk: three of 15, not 20, 20, 5
    assert [s.source.rsplit(":", 1)[1] for s in seeds] == ["2", "17", "32"]
    for seed in seeds:
        assert seed.text.startswith("| n | name | note |\n|---|---|---|\n")
        assert seed.extra["table"]["rows_total"] == 45
    assert [r[0] for s in seeds for r in s.extra["table"]["rows"]] == \
        [str(i) for i in range(1, 46)]
    tight = list(tables(tmp_path, chunk={"max_tokens": 64, "overlap_tokens": 0}))
    assert len(tight) > 3 and all(estimate_tokens(s.text) <= 64 for s in tight)
    assert sum(len(s.extra["table"]["rows"]) for s in tight) == 45


def test_wide_tables_show_max_columns_and_name_the_rest(tmp_path):
    header = ",".join(f"c{i}" for i in range(1, 16))
    (tmp_path / "wide.csv").write_text(f"{header}\n" + ",".join(["a|b"] * 15) + "\n")
    [seed] = tables(tmp_path, table={"max_columns": 3})
    assert seed.text == "| c1 | c2 | c3 |\n|---|---|---|\n| a\\|b | a\\|b | a\\|b |"
    assert seed.extra["table"]["omitted_columns"] == [f"c{i}" for i in range(4, 16)]


def test_kinds_are_sorted_and_checked_against_the_format(tmp_path):
    config = SeedsConfig(path=tmp_path, kinds=["table", "prose", "table"])
    assert config.kinds == ["prose", "table"]
    with pytest.raises(ValidationError, match="kinds"):
        SeedsConfig(path=tmp_path, kinds=["pdf"])
    with pytest.raises(ValidationError, match="format 'jsonl' reads prose seeds, but kinds"):
        SeedsConfig(path=tmp_path, format="jsonl", kinds=["table"])
    with pytest.raises(ValidationError, match="kinds"):
        SeedsConfig(path=tmp_path, kinds=[])
