"""Tables as seeds: CSV/TSV files and JSON lines of records (`*.table.jsonl`). Each seed is
a chunk of rows rendered as a Markdown table with the header repeated, within
`table.rows_per_chunk` rows and `chunk.max_tokens` tokens; its structured form (columns,
rows) goes to templates as `table`. A ragged or malformed row is reported and skipped; a
table without rows is reported as 'empty'."""

from __future__ import annotations

import csv
import io
from typing import Any, Callable, Iterator

import orjson

from gristmill.config.seeds import SeedsConfig
from gristmill.seeds.files import InputFile, Unusable, read_text
from gristmill.seeds.report import SeedReport

MAX_TABLE_BYTES = 20 << 20  # read whole: a bigger table belongs in Parquet
MAX_CELL_CHARS = 100
SNIFF_CHARS = 16_384
DELIMITERS = ",;|\t"

Row = list[Any]
Table = tuple[list[str], list[tuple[int, Row]]]  # columns, (line, row) pairs


def read_table(file: InputFile, report: SeedReport) -> Table | None:
    """(columns, [(line, row)]) or None (the problem reported)."""
    where = str(file.path)
    try:
        text = read_text(file.path, MAX_TABLE_BYTES)
    except Unusable as exc:
        report.problem(where, exc.reason, exc.detail)
        return None
    is_csv = file.path.suffix.lower() in (".csv", ".tsv")
    columns, rows = (_csv(text, file, report) if is_csv else _records(text, where, report))
    if not columns or not rows:
        report.problem(where, "empty",
                       "a header but no rows" if columns else "no header and no rows")
        return None
    return columns, rows


def _dialect(text: str, tsv: bool) -> Any:
    if tsv:
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(text[:SNIFF_CHARS], delimiters=DELIMITERS)
    except csv.Error:  # one column, or too little to tell: plain commas
        return csv.excel


def _csv(text: str, file: InputFile, report: SeedReport) -> Table:
    """The first row is the header; a row with another number of fields is reported."""
    where = str(file.path)
    reader = csv.reader(io.StringIO(text), _dialect(text, file.path.suffix.lower() == ".tsv"))
    columns: list[str] = []
    rows: list[tuple[int, Row]] = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # blank lines
            if not columns:
                columns = [f.strip() for f in fields]
            elif len(fields) != len(columns):
                report.problem(f"{where}:{reader.line_num}", "ragged_row",
                               f"{len(fields)} fields, the header has {len(columns)}")
            else:
                rows.append((reader.line_num, fields))
    except csv.Error as exc:  # e.g. an unclosed quote swallowing the rest of the file
        report.problem(f"{where}:{reader.line_num}", "bad_csv", str(exc))
    return columns, rows


def _records(text: str, where: str, report: SeedReport) -> Table:
    """Columns are the keys in order of first appearance; a missing key is an empty cell."""
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            report.problem(f"{where}:{number}", "bad_json", str(exc))
            continue
        if not isinstance(record, dict) or not record:
            report.problem(f"{where}:{number}", "not_a_record",
                           f"a {type(record).__name__}, not a JSON object with fields")
            continue
        records.append((number, record))
    columns = list(dict.fromkeys(key for _, record in records for key in record))
    return columns, [(n, [record.get(c) for c in columns]) for n, record in records]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 1] + "…"


def markdown(columns: list[str], rows: list[Row]) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table_chunks(columns: list[str], rows: list[tuple[int, Row]], config: SeedsConfig,
                 count: Callable[[str], int]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(Markdown, structured form) of each chunk of rows. Chunks are balanced (41 rows at 20
    per chunk: 14, 14, 13) and then kept within max_tokens; a single row over it stands
    alone."""
    keep = config.table.max_columns
    shown, omitted = columns[:keep], columns[keep:]
    budget, per_chunk = config.chunk.max_tokens, config.table.rows_per_chunk
    size = -(-len(rows) // -(-len(rows) // per_chunk))  # ceil(n / ceil(n / per_chunk))
    start = 0
    while start < len(rows):
        end = min(start + size, len(rows))
        chunk = [r[:keep] for _, r in rows[start:end]]
        while len(chunk) > 1 and count(markdown(shown, chunk)) > budget:
            chunk.pop()
        end = start + len(chunk)
        yield markdown(shown, chunk), {"table": {
            "columns": shown, "rows": chunk, "omitted_columns": omitted,
            "first_line": rows[start][0], "rows_total": len(rows)}}
        start = end
