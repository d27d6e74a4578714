"""Readers: each turns one input file into documents, lazily. A document is one file
(prose, code, an HTML page), one record (JSONL line, Parquet/dataset row) or one chunk of a
table's rows; problems are reported and the reader moves on, so one bad file or row never
stops a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal

import orjson

from gristmill.seeds.chunk import Part, top_level_blocks
from gristmill.seeds.clean import clean_code, prose_parts, prose_parts_of
from gristmill.config.seeds import SeedsConfig
from gristmill.seeds.files import InputFile, Unusable, check_utf8_file, read_text, sniff
from gristmill.seeds.report import SeedReport

# Prose files up to this size are read at once; larger ones are validated, then streamed.
STREAM_BYTES = 8 << 20
# Code with lines this long, on average or at worst, is minified or generated.
MINIFIED_MEAN_LINE = 200
MINIFIED_MAX_LINE = 4000


@dataclass(slots=True)
class Doc:
    source: str  # where a user finds it: path, path:line, path#row
    key: str  # the same, relative to the configured folder: the id's source identity
    kind: Literal["prose", "code", "html", "table"]
    language: str | None
    title: str | None
    parts: Iterable[Part]  # prose paragraphs or code blocks, as (separator, text)
    record: bool = False  # a row of a dataset: an empty one is routine, not a problem
    extra: dict[str, Any] | None = None  # the structured form every chunk's seed carries
    view: str = ""  # html: the element view, part of the seed's content besides its text


def read_docs(file: InputFile, config: SeedsConfig, report: SeedReport,
              count: Callable[[str], int]) -> Iterator[Doc]:
    if file.reader == "html":
        return _page_docs(file, report)
    if file.reader == "table":
        return _table_docs(file, config, report, count)
    if file.reader == "text":
        return _text_docs(file, report)
    if file.reader == "code":
        return _code_docs(file, config, report)
    if file.reader == "jsonl":
        return _record_docs(file, _jsonl_rows(file, config.field, report), ":", report)
    from gristmill.seeds.tabular import hf_rows, parquet_rows  # pyarrow/datasets only when needed

    if file.reader == "parquet":
        return _record_docs(file, parquet_rows(file, config.field, report), "#", report)
    return _record_docs(file, hf_rows(file, config.field, config.hf_split, report), "#", report)


def _text_docs(file: InputFile, report: SeedReport) -> Iterator[Doc]:
    try:
        size = file.path.stat().st_size
        if size > STREAM_BYTES:
            check_utf8_file(file.path)
            lines: Iterable[str] = _stream_lines(file)
        else:
            lines = read_text(file.path).splitlines()
    except OSError as exc:
        report.problem(str(file.path), "unreadable", exc.strerror or str(exc))
        return
    except Unusable as exc:
        report.problem(str(file.path), exc.reason, exc.detail)
        return
    yield Doc(str(file.path), file.key, "prose", None, file.path.name, prose_parts(lines))


def _page_docs(file: InputFile, report: SeedReport) -> Iterator[Doc]:
    from gristmill.seeds.web import page_parts, read_page  # trafilatura only when asked for

    for main, extra in read_page(file, report):
        yield Doc(str(file.path), file.key, "html", None, extra["title"] or file.path.name,
                  page_parts(main), extra=extra, view=extra["elements_text"])


def _table_docs(file: InputFile, config: SeedsConfig, report: SeedReport,
                count: Callable[[str], int]) -> Iterator[Doc]:
    from gristmill.seeds.tables import read_table, table_chunks

    if (table := read_table(file, report)) is None:
        return
    for text, extra in table_chunks(*table, config, count):
        line = extra["table"]["first_line"]
        yield Doc(f"{file.path}:{line}", f"{file.key}:{line}", "table", None, file.path.name,
                  [("", text)], extra=extra)


def _stream_lines(file: InputFile) -> Iterator[str]:
    with file.path.open(encoding="utf-8-sig", newline=None) as fh:
        for line in fh:
            yield from line.splitlines()  # the same breaks (\f, \u2028...) as a small file


def _code_docs(file: InputFile, config: SeedsConfig, report: SeedReport) -> Iterator[Doc]:
    where = str(file.path)
    try:
        text = clean_code(read_text(file.path, config.code.max_file_bytes))
        check_not_minified(file.path.name, text)
    except Unusable as exc:
        if exc.reason == "empty":  # an empty __init__.py is normal, not broken
            report.drop("empty")
        else:
            report.problem(where, exc.reason, exc.detail)
        return
    yield Doc(where, file.key, "code", file.language, file.path.name, top_level_blocks(text))


def check_not_minified(name: str, text: str) -> None:
    if ".min." in name:
        raise Unusable("minified", "'.min.' in the file name")
    lengths = [len(line) for line in text.split("\n") if line]
    if not lengths:
        return
    longest, mean = max(lengths), sum(lengths) / len(lengths)
    if longest > MINIFIED_MAX_LINE or mean > MINIFIED_MEAN_LINE:
        raise Unusable("minified", f"line lengths: longest {longest}, mean {mean:.0f}")


def _jsonl_rows(file: InputFile, field: str, report: SeedReport) -> Iterator[tuple[int, object]]:
    """(line number, value of `field`) for each parseable line; bad lines reported."""
    path = str(file.path)
    try:
        with file.path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if number == 1:
                    sniff(line[:8192])  # binary or UTF-16: the whole file is unusable
                    line = line.removeprefix(b"\xef\xbb\xbf")
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    report.problem(f"{path}:{number}", "bad_json", str(exc))
                    continue
                if not isinstance(row, dict) or field not in row:
                    report.problem(f"{path}:{number}", "missing_field", f"no field {field!r}")
                    continue
                yield number, row[field]
    except OSError as exc:
        report.problem(path, "unreadable", exc.strerror or str(exc))
    except Unusable as exc:
        report.problem(path, exc.reason, exc.detail)


def _record_docs(file: InputFile, rows: Iterable[tuple[int, object]], mark: str,
                 report: SeedReport) -> Iterator[Doc]:
    """One prose document per record; `mark` is ':' for line numbers, '#' for rows."""
    path = str(file.path)
    for index, value in rows:
        where = f"{path}{mark}{index}"
        if not isinstance(value, str):
            reason = "missing_field" if value is None else "bad_field_type"
            report.problem(where, reason, f"value is {type(value).__name__}, not a string")
            continue
        yield Doc(where, f"{file.key}{mark}{index}", "prose", None, None,
                  prose_parts_of(value), record=True)
