"""Writing exported records: one file, or one file per split (the records' skill, say) in a
folder, or a Hugging Face dataset (a DatasetDict when split). Records stream through: a JSONL
line is written as it comes, Parquet rows are buffered up to BATCH over all open files. Output
is built beside its destination and moved into place only when complete."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import orjson

from gristmill.dataset.export.shapes import arrow_schema, to_openai, to_row, to_sharegpt
from gristmill.dataset.files import atomic_path
from gristmill.errors import ConfigError

BATCH = 10_000  # Parquet rows held before they are written, over all splits
SUFFIX = dict(parquet=".parquet", sharegpt=".jsonl", openai=".jsonl")
NO_SPLIT = "none"  # the split of records without the field (a generic pipeline's)
Record = dict[str, Any]


class Part(Protocol):
    def write(self, rec: Record) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class JsonlPart:
    def __init__(self, path: Path, convert: Callable[[Record], Record]) -> None:
        self.fh = path.open("wb", buffering=1 << 18)
        self.convert = convert

    def write(self, rec: Record) -> None:
        self.fh.write(orjson.dumps(self.convert(rec), option=orjson.OPT_APPEND_NEWLINE))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.fh.close()


class ParquetPart:
    def __init__(self, path: Path, tools: bool) -> None:
        import pyarrow.parquet as pq

        self.schema, self.tools = arrow_schema(tools), tools
        self.writer = pq.ParquetWriter(path, self.schema)
        self.rows: list[Record] = []

    def write(self, rec: Record) -> None:
        self.rows.append(to_row(rec, self.tools))

    def flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            self.writer.write_batch(pa.RecordBatch.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def part_maker(fmt: str, tools: bool) -> Callable[[Path], Part]:
    if fmt == "parquet":
        return lambda path: ParquetPart(path, tools)
    convert = to_sharegpt if fmt == "sharegpt" else to_openai
    return lambda path: JsonlPart(path, convert)


def split_name(value: Any) -> str:
    """A file and split name for a field's value: word characters only (Hugging Face split
    names must match \\w+(\\.\\w+)*), `none` for a record without the field."""
    if value is None:
        return NO_SPLIT
    return re.sub(r"\W+", "_", str(value)).strip("_") or NO_SPLIT


def write_parts(records: Iterable[Record], make: Callable[[Path], Part], folder: Path,
                suffix: str, split_by: str) -> dict[str, int]:
    """One file per split in `folder` (which exists); returns records per split."""
    counts: dict[str, int] = {}
    parts: dict[str, Part] = {}
    held = 0
    with ExitStack() as stack:
        for rec in records:
            name = split_name(rec.get(split_by))
            if name not in parts:
                parts[name] = make(folder / f"{name}{suffix}")
                stack.callback(parts[name].close)
            parts[name].write(rec)
            counts[name] = counts.get(name, 0) + 1
            held += 1
            if held % BATCH == 0:
                for part in parts.values():
                    part.flush()
    return counts


def write_one(records: Iterable[Record], make: Callable[[Path], Part], out: Path) -> None:
    with atomic_path(out) as tmp:
        part = make(tmp)
        try:
            for number, rec in enumerate(records, 1):
                part.write(rec)
                if number % BATCH == 0:
                    part.flush()
        finally:
            part.close()


def write_split_files(records: Iterable[Record], make: Callable[[Path], Part], out: Path,
                      suffix: str, split_by: str) -> dict[str, int]:
    """A folder of `<split><suffix>` files that replaces an earlier one of the same kind."""
    check_replaceable(out, "split", lambda folder: all(f.is_file() and f.suffix == suffix
                                                       for f in folder.iterdir()))
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as scratch:
        built = Path(scratch) / "out"
        built.mkdir()
        counts = write_parts(records, make, built, suffix, split_by)
        _replace(built, out)
    return counts


def write_hf(records: Iterable[Record], out: Path, tools: bool, split_by: str | None,
             card: Callable[[dict[str, int]], str]) -> dict[str, int]:
    """Parquet first (streamed), then datasets turns it into Arrow shards: a Dataset, or a
    DatasetDict of one split per value of `split_by`. `card` gets the records per split."""
    check_replaceable(out, "hf", lambda folder: any((folder / name).is_file() for name in
                                              ("state.json", "dataset_dict.json")))
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".hf-export-") as scratch:
        parquet, built = Path(scratch) / "parquet", Path(scratch) / "hf"
        parquet.mkdir()
        make = part_maker("parquet", tools)
        if split_by is None:
            write_one(records, make, parquet / "train.parquet")
            counts = None
        else:
            counts = write_parts(records, make, parquet, ".parquet", split_by)
        os.environ["HF_DATASETS_OFFLINE"] = "1"  # export must never reach for the Hub
        os.environ["HF_HUB_OFFLINE"] = "1"
        from datasets import Dataset, DatasetDict

        cache = str(Path(scratch) / "cache")
        loaded = {f.stem: Dataset.from_parquet(str(f), cache_dir=cache)
                  for f in sorted(parquet.iterdir())}
        dataset = DatasetDict(loaded) if counts is not None else loaded["train"]
        dataset.save_to_disk(str(built))
        sizes = {name: d.num_rows for name, d in loaded.items()}
        del dataset, loaded  # their Arrow files live in the scratch folder, about to be removed
        (built / "README.md").write_text(card(sizes if counts is not None else {}),
                                         encoding="utf-8")
        _replace(built, out)
    return counts or {}


def check_replaceable(out: Path, kind: str, earlier: Callable[[Path], bool]) -> None:
    """An earlier export of the same kind (or an empty folder) is replaced; never a folder
    that is something else."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not earlier(out))):
        raise ConfigError(f"{out} exists and is not an earlier {kind} export; "
                          "choose another --out")


def _replace(built: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)  # checked up front: an earlier export or an empty folder
    built.rename(out)
