"""Finding input files (lazily, in a deterministic order) and reading them as UTF-8 text.

Folders are walked depth-first with each folder's entries sorted by name, so the order is
the same on every run and no list of all paths is ever held. Folder symlinks are not
followed (no cycles); file symlinks are."""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Collection, Iterator

from gristmill.errors import ConfigError

from gristmill.config.seeds import DEFAULT_KINDS, SeedsConfig, language_of
from gristmill.seeds.report import SeedReport

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
PARQUET_SUFFIXES = frozenset({".parquet"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
TABLE_SUFFIXES = frozenset({".csv", ".tsv"})
# A JSONL file of records is prose (its `field`) unless its name says it is a table.
TABLE_JSONL_ENDINGS = (".table.jsonl", ".table.ndjson")
HF_FILE_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson", ".parquet", ".txt", ".csv"})
SNIFF_BYTES = 8192  # a NUL byte in this many leading bytes marks a binary file
_UTF16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE,
                  codecs.BOM_UTF16_BE)


@dataclass(slots=True, frozen=True)
class InputFile:
    path: Path
    key: str  # path relative to the configured folder (posix): the id's source identity
    reader: str  # "text", "code", "jsonl", "parquet", "hf", "html" or "table"
    language: str | None = None


class Unusable(Exception):
    """A file cannot be used; `reason` is the count key, `detail` the explanation."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_paths(config: SeedsConfig) -> None:
    for path in config.paths:
        if not path.exists():
            raise ConfigError(f"seeds.path: {path} does not exist")


def is_saved_dataset(folder: Path) -> bool:
    """A folder written by `datasets` `save_to_disk` (a Dataset or a DatasetDict)."""
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file())


def plan_inputs(config: SeedsConfig, report: SeedReport | None = None) -> Iterator[InputFile]:
    """Every input file of the config, with the reader for it; unsupported files counted
    as 'ignored'."""
    for root in config.paths:
        if root.is_dir() and not (config.format in ("auto", "hf") and is_saved_dataset(root)):
            yield from _walk(root, root, config, report)
        else:
            yield _single(root, config)


def _single(path: Path, config: SeedsConfig) -> InputFile:
    """An explicitly named file is always read: by its format, or by suffix (html and table
    only when listed in `kinds`, else as before they existed), else as prose."""
    fmt = config.format
    if fmt == "auto" and path.is_dir():
        fmt = "hf"
    elif fmt == "auto":
        fmt = (_reader_for(path, fmt, config.kinds)
               or _reader_for(path, fmt, DEFAULT_KINDS, opt_in=False) or "text")
    language = language_of(path) if fmt == "code" else None
    return InputFile(path, path.name, fmt, language)


def is_table_file(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES or path.name.lower().endswith(TABLE_JSONL_ENDINGS)


def _reader_for(path: Path, fmt: str, kinds: Collection[str], opt_in: bool = True) -> str | None:
    """The reader for `path`; None when it is not read. `opt_in`: html and table files are
    recognised (read when their kind is listed), so they are never read as prose."""
    suffix = path.suffix.lower()
    if fmt == "auto" and opt_in and suffix in HTML_SUFFIXES:
        return "html" if "html" in kinds else None
    if fmt == "auto" and opt_in and is_table_file(path):
        return "table" if "table" in kinds else None
    if "prose" not in kinds:
        fmt = "code" if fmt == "auto" else fmt  # only code is left to find by suffix
    if fmt in ("auto", "text") and suffix in TEXT_SUFFIXES:
        return "text"
    if fmt in ("auto", "jsonl") and suffix in JSONL_SUFFIXES:
        return "jsonl"
    if fmt in ("auto", "parquet") and suffix in PARQUET_SUFFIXES:
        return "parquet"
    if fmt == "hf" and suffix in HF_FILE_SUFFIXES:
        return "hf"
    if fmt in ("auto", "code") and language_of(path) is not None and "code" in kinds:
        return "code"
    return None


def _walk(folder: Path, root: Path, config: SeedsConfig,
          report: SeedReport | None) -> Iterator[InputFile]:
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        if report is not None:
            report.problem(str(folder), "unreadable", exc.strerror or str(exc))
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if any(fnmatch(entry.name, pattern) for pattern in config.code.skip_dirs):
                continue
            if (config.format in ("auto", "hf") and "prose" in config.kinds
                    and is_saved_dataset(path)):
                yield InputFile(path, path.relative_to(root).as_posix(), "hf")
            else:
                yield from _walk(path, root, config, report)
        elif entry.is_file():
            found = _classify(path, root, config)
            if found is not None:
                yield found
            elif report is not None:
                report.drop("ignored")


def _classify(path: Path, root: Path, config: SeedsConfig) -> InputFile | None:
    reader = _reader_for(path, config.format, config.kinds)
    if reader is None:
        return None
    language = language_of(path) if reader == "code" else None
    if reader == "code" and not config.code.wants(language):
        return None
    return InputFile(path, path.relative_to(root).as_posix(), reader, language)


def sniff(head: bytes) -> None:
    """Raise Unusable for UTF-16/32 text and for binary data."""
    if head.startswith(_UTF16_32_BOMS):
        raise Unusable("bad_encoding", "UTF-16/32 text; convert it to UTF-8")
    if b"\0" in head[:SNIFF_BYTES]:
        raise Unusable("binary", "NUL byte in the first 8 KB")


def decode(data: bytes) -> str:
    """UTF-8, with or without a BOM; anything else is refused rather than guessed."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unusable("bad_encoding", f"not UTF-8 at byte {exc.start}: "
                       f"{data[exc.start:exc.start + 4]!r}") from None


def read_text(path: Path, max_bytes: int | None = None) -> str:
    """The whole file as text, or Unusable (empty, too_large, binary, bad_encoding,
    unreadable)."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise Unusable("empty", "0 bytes")
        if max_bytes is not None and size > max_bytes:
            raise Unusable("too_large", f"{size} bytes > max_file_bytes {max_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        raise Unusable("unreadable", exc.strerror or str(exc)) from None
    sniff(data[:SNIFF_BYTES])
    return decode(data)


def check_utf8_file(path: Path) -> None:
    """Validate a large file in 1 MB blocks before streaming it, so a bad byte near the
    end cannot leave a file half-used."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                if offset == 0:
                    sniff(block)
                decoder.decode(block)
                offset += len(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise Unusable("bad_encoding", f"not UTF-8 near byte {offset + exc.start}") from None
    except OSError as exc:
        raise Unusable("unreadable", exc.strerror or str(exc)) from None
