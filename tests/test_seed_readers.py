"""Seed readers (engine/seeds/readers): prose and code folders, JSONL, Parquet and saved
Hugging Face datasets, each with its malformed input counted and skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path


from tests.seed_support import PY_CODE, collect, document, source


def test_mixed_folder_reads_prose_and_code_by_their_readers(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n" + document(1, 3))
    (tmp_path / "notes.txt").write_text(document(2, 2))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "mill.py").write_text(PY_CODE)
    (tmp_path / "src" / "app.ts").write_text("export const x: number = 1;\n" * 20)
    (tmp_path / "image.png").write_bytes(b"\x89PNG\0\0")
    src = source(tmp_path)
    seeds = collect(src)
    kinds = {Path(s.source).name: (s.kind, s.language, s.title) for s in seeds}
    assert kinds == {"guide.md": ("prose", None, "guide.md"),
                     "notes.txt": ("prose", None, "notes.txt"),
                     "mill.py": ("code", "python", "mill.py"),
                     "app.ts": ("code", "typescript", "app.ts")}
    assert [Path(s.source).name for s in seeds] == ["guide.md", "notes.txt", "app.ts", "mill.py"]
    code = next(s for s in seeds if s.language == "python")
    assert code.text == PY_CODE.rstrip("\n")  # code spacing is untouched
    assert src.report.counts["ignored"] == 1 and src.report.files == 4
    assert src.count_files() == 4


def test_code_tree_skips_vendored_binary_huge_and_minified_files(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "main.go").write_text("package main\n\nfunc main() {\n\tprintln(1)\n}\n")
    (tmp_path / "node_modules" / "lib").mkdir(parents=True)
    (tmp_path / "node_modules" / "lib" / "index.js").write_text("module.exports = 1;\n")
    (tmp_path / "pkg" / "blob.c").write_bytes(b"int x;\0\0\0binary")
    (tmp_path / "pkg" / "huge.py").write_text("x = 1\n" * 50_000)
    (tmp_path / "pkg" / "bundle.js").write_text("var a=1;" * 2000 + "\n")
    (tmp_path / "pkg" / "lib.min.js").write_text("var a = 1;\n")
    (tmp_path / "pkg" / "query.sql").write_text("SELECT 1;\n")
    src = source(tmp_path, format="code", code={"max_file_bytes": 100_000})
    seeds = collect(src)
    assert sorted((Path(s.source).name, s.language) for s in seeds) == [
        ("main.go", "go"), ("query.sql", "sql")]
    problems = {(Path(p).name, reason) for p, reason, _ in src.report.problems}
    assert problems == {("blob.c", "binary"), ("huge.py", "too_large"),
                        ("bundle.js", "minified"), ("lib.min.js", "minified")}
    assert src.report.counts["minified"] == 2
    assert not any("node_modules" in s.source for s in seeds)


def test_code_languages_filter(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.rs").write_text("fn main() {}\n")
    seeds = collect(source(tmp_path, code={"languages": ["rust"]}))
    assert [s.language for s in seeds] == ["rust"]


def test_jsonl_reports_malformed_lines_and_missing_fields_and_goes_on(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join([
        json.dumps({"text": "first seed"}).encode(),
        b'{"text": "broken',
        json.dumps({"body": "no text field"}).encode(),
        b"",
        json.dumps({"text": 42}).encode(),
        json.dumps({"text": None}).encode(),
        json.dumps(["not", "an", "object"]).encode(),
        json.dumps({"text": "last seed"}).encode(),
    ]))
    src = source(path)
    seeds = collect(src)
    assert [(s.text, s.source) for s in seeds] == [("first seed", f"{path}:1"),
                                                   ("last seed", f"{path}:8")]
    assert [(p, r) for p, r, _ in src.report.problems] == [
        (f"{path}:2", "bad_json"), (f"{path}:3", "missing_field"),
        (f"{path}:5", "bad_field_type"), (f"{path}:6", "missing_field"),
        (f"{path}:7", "missing_field")]
    assert all(s.kind == "prose" and s.title is None for s in seeds)


def test_jsonl_custom_field(tmp_path):
    path = tmp_path / "rows.ndjson"
    path.write_text(json.dumps({"content": "hello"}) + "\n")
    assert [s.text for s in source(path, field="content")] == ["hello"]


def write_parquet(path: Path, texts: list, row_group_size: int = 4) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(len(texts))), "text": pa.array(texts, pa.string())})
    pq.write_table(table, path, row_group_size=row_group_size)


def test_parquet_reader_and_truncated_file(tmp_path):
    write_parquet(tmp_path / "a.parquet", [f"row {i}" for i in range(10)] + [None])
    data = (tmp_path / "a.parquet").read_bytes()
    (tmp_path / "b.parquet").write_bytes(data[: len(data) // 2])  # truncated: no footer
    write_parquet(tmp_path / "c.parquet", ["after the broken one"])
    src = source(tmp_path)
    seeds = collect(src)
    assert [s.text for s in seeds] == [f"row {i}" for i in range(10)] + ["after the broken one"]
    assert seeds[3].source == f"{tmp_path / 'a.parquet'}#3"
    reasons = {(Path(p).name, r) for p, r, _ in src.report.problems}
    assert reasons == {("a.parquet#10", "missing_field"), ("b.parquet", "corrupt_parquet")}


def test_parquet_corrupt_row_group_is_skipped_and_row_numbers_kept(tmp_path):
    import pyarrow.parquet as pq

    write_parquet(tmp_path / "a.parquet", [f"row {i} " * 20 for i in range(12)])
    data = bytearray((tmp_path / "a.parquet").read_bytes())
    page = pq.ParquetFile(tmp_path / "a.parquet").metadata.row_group(1).column(1)
    data[page.data_page_offset:page.data_page_offset + 40] = b"\xab" * 40  # garble a page
    (tmp_path / "a.parquet").write_bytes(bytes(data))
    src = source(tmp_path / "a.parquet")
    rows = [int(s.source.rsplit("#", 1)[1]) for s in src]
    assert rows == [0, 1, 2, 3, 8, 9, 10, 11]
    assert [(Path(p).name, r) for p, r, _ in src.report.problems] == [
        ("a.parquet#4", "corrupt_parquet")]


def test_parquet_missing_and_non_text_columns(tmp_path):
    write_parquet(tmp_path / "a.parquet", ["x"])
    src = source(tmp_path / "a.parquet", field="body")
    assert collect(src) == [] and src.report.counts["missing_field"] == 1
    src = source(tmp_path / "a.parquet", field="id")
    assert collect(src) == [] and src.report.counts["bad_field_type"] == 1


def test_hf_saved_dataset_and_local_files(tmp_path):
    import datasets

    texts = [f"dataset row {i}" for i in range(5)]
    datasets.Dataset.from_dict({"text": texts, "n": list(range(5))}).save_to_disk(
        str(tmp_path / "saved"))
    assert [s.text for s in source(tmp_path / "saved")] == texts  # auto-detected
    seeds = collect(source(tmp_path, format="hf"))
    assert [s.text for s in seeds] == texts and seeds[2].source.endswith("saved#2")
    assert os.environ["HF_DATASETS_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    assert datasets.config.HF_HUB_OFFLINE is True  # set even though imported before

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["t"]}),
                               "test": datasets.Dataset.from_dict({"text": ["held out"]})})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert [s.text for s in source(tmp_path / "dict", hf_split="test")] == ["held out"]
    src = source(tmp_path / "dict", hf_split="validation")
    assert collect(src) == [] and src.report.counts["missing_split"] == 1

    (tmp_path / "local.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    assert [s.text for s in source(tmp_path / "local.jsonl", format="hf")] == texts


