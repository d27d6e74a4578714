"""Row readers for Parquet files and local Hugging Face datasets. pyarrow and datasets are
imported here, inside the functions, so plain-text runs never load them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from gristmill.seeds.files import InputFile
from gristmill.seeds.report import SeedReport

BATCH_ROWS = 1024  # rows decoded at once: bounds memory whatever the row-group size
HF_BUILDERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet",
               ".txt": "text", ".csv": "csv"}


def _is_text_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
                or getattr(pa.types, "is_string_view", lambda _: False)(arrow_type))


def parquet_rows(file: InputFile, field: str, report: SeedReport) -> Iterator[tuple[int, Any]]:
    """(row number, value) of one column, a row group at a time, a batch at a time. A
    corrupt row group is reported and skipped; row numbers stay those of the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(file.path)
    try:
        parquet = pq.ParquetFile(file.path)
    except (pa.ArrowException, OSError) as exc:
        report.problem(path, "corrupt_parquet", str(exc))
        return
    with parquet:
        schema = parquet.schema_arrow
        if field not in schema.names:
            report.problem(path, "missing_field", f"no column {field!r}; columns: "
                           f"{', '.join(schema.names)}")
            return
        if not _is_text_type(schema.field(field).type):
            report.problem(path, "bad_field_type", f"column {field!r} is "
                           f"{schema.field(field).type}, not string")
            return
        first_row = 0
        for group in range(parquet.num_row_groups):
            yield from _row_group(parquet, group, field, first_row, path, report)
            first_row += parquet.metadata.row_group(group).num_rows


def _row_group(parquet: Any, group: int, field: str, first_row: int, path: str,
               report: SeedReport) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa

    row = first_row
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group],
                                          columns=[field], use_threads=False):
            for value in batch.column(0).to_pylist():
                yield row, value
                row += 1
    except (pa.ArrowException, OSError) as exc:
        report.problem(f"{path}#{row}", "corrupt_parquet", f"row group {group}: {exc}")


def _import_datasets_offline() -> Any:
    # Local data only: never reach the Hub, whatever the environment says. The libraries
    # read these variables at import, so if something imported them earlier, their module
    # flags are set as well.
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets
    import huggingface_hub.constants

    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    return datasets


def hf_rows(file: InputFile, field: str, split: str,
            report: SeedReport) -> Iterator[tuple[int, Any]]:
    """(row number, value) from a `save_to_disk` folder (memory-mapped Arrow, read in
    batches) or a local data file (`load_dataset(..., streaming=True)`, no cache)."""
    datasets = _import_datasets_offline()
    import pyarrow as pa

    path = str(file.path)
    errors = (datasets.exceptions.DatasetsError, pa.ArrowException, OSError, ValueError,
              KeyError)
    try:
        if file.path.is_dir():
            yield from _saved_rows(datasets, file.path, field, split, report)
        else:
            yield from _file_rows(datasets, file.path, field, split)
    except errors as exc:
        report.problem(path, "corrupt_dataset", f"{type(exc).__name__}: {exc}")


def _saved_rows(datasets: Any, folder: Path, field: str, split: str,
                report: SeedReport) -> Iterator[tuple[int, Any]]:
    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            report.problem(str(folder), "missing_split", f"no split {split!r}; splits: "
                           f"{', '.join(loaded)}")
            return
        loaded = loaded[split]
    if field not in loaded.column_names:
        report.problem(str(folder), "missing_field", f"no column {field!r}; columns: "
                       f"{', '.join(loaded.column_names)}")
        return
    row = 0
    for batch in loaded.select_columns([field]).iter(batch_size=BATCH_ROWS):
        for value in batch[field]:
            yield row, value
            row += 1


def _file_rows(datasets: Any, path: Path, field: str, split: str) -> Iterator[tuple[int, Any]]:
    builder = HF_BUILDERS.get(path.suffix.lower(), "text")
    stream = datasets.load_dataset(builder, data_files={split: [str(path)]}, split=split,
                                   streaming=True)
    for row, record in enumerate(stream):
        yield row, record.get(field)
