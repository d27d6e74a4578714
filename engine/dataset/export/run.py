"""`gristmill export`: read a run's records (streamed, unreadable lines counted and skipped)
and write them in one format, whole or one split per value of a field."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from gristmill.dataset.conversation import is_conversation, messages_of
from gristmill.dataset.export.card import dataset_card
from gristmill.dataset.export.shapes import int_or_none, mentions_tools
from gristmill.dataset.export.writers import (SUFFIX, part_maker, write_hf, write_one,
                                              write_split_files)
from gristmill.errors import ConfigError

log = logging.getLogger("gristmill.export")

EXPORT_FORMATS = ("parquet", "hf", "sharegpt", "openai")
SPLIT_FIELDS = ("skill", "type", "agent", "model")
DEFAULT_OUT = dict(parquet="dataset.parquet", hf="hf", sharegpt="sharegpt.jsonl",
                   openai="openai.jsonl")
MAX_WARNINGS = 5  # a badly damaged file should not flood the terminal


@dataclass
class Stats:
    """What the dataset card reports, gathered while the records stream past."""
    records: int = 0
    skipped: int = 0  # unreadable lines
    prompt_tokens: int = 0
    completion_tokens: int = 0
    conversations: int = 0  # several turns, or tools
    tool_calls: int = 0  # records with at least one tool call
    skills: Counter = field(default_factory=Counter)  # value -> records
    types: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)

    def add(self, rec: dict[str, Any]) -> None:
        self.records += 1
        for counter, key in ((self.skills, "skill"), (self.types, "type"), (self.models, "model")):
            if rec.get(key) is not None:
                counter[str(rec[key])] += 1
        usage = rec["usage"] if isinstance(rec.get("usage"), dict) else {}
        self.prompt_tokens += int_or_none(usage.get("prompt_tokens")) or 0
        self.completion_tokens += int_or_none(usage.get("completion_tokens")) or 0
        if is_conversation(rec):
            self.conversations += 1
            self.tool_calls += any(m.get("tool_calls") for m in messages_of(rec))


def export_run(run_dir: Path, fmt: str, out: Path | None = None,
               input_file: Path | None = None, *, license_id: str | None = None,
               split_by: str | None = None,
               say: Callable[[str], None] | None = None) -> Path:
    """Write the run's records in format `fmt` and return the path written: a file, or a
    folder for hf and for `split_by` (one file or split per value of that field).
    `say` receives one-line status messages (which input was read, what was written)."""
    say = say or log.info
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of "
                          f"{', '.join(EXPORT_FORMATS)}")
    if split_by is not None and split_by not in SPLIT_FIELDS:
        raise ConfigError(f"--split-by {split_by!r}: choose one of {', '.join(SPLIT_FIELDS)}")
    run_dir = Path(run_dir)
    source = resolve_input(run_dir, input_file)
    default = fmt if split_by else DEFAULT_OUT[fmt]
    out = Path(out) if out is not None else run_dir / "export" / default
    say(f"reading {source}")
    tools = fmt in ("parquet", "hf") and has_tool_fields(source)  # fixes the Arrow schema
    stats = Stats()
    records = read_records(source, stats)
    first = next(records, None)  # datasets cannot even load back an empty dataset it saved
    if first is None:
        raise ConfigError(f"{source} holds no readable records; nothing to export")
    records = chain([first], records)
    out.parent.mkdir(parents=True, exist_ok=True)
    splits: dict[str, int] = {}
    if fmt == "hf":
        splits = write_hf(records, out, tools, split_by, lambda sizes: dataset_card(
            stats, source, run_dir, license_id, tools=tools, splits=sizes, split_by=split_by))
    elif split_by:
        splits = write_split_files(records, part_maker(fmt, tools), out, SUFFIX[fmt], split_by)
    else:
        write_one(records, part_maker(fmt, tools), out)
    skipped = f" ({stats.skipped} unreadable line(s) skipped)" if stats.skipped else ""
    per_split = f" in {len(splits)} split(s) by {split_by}" if split_by else ""
    say(f"wrote {stats.records:,} records{per_split} to {out}{skipped}")
    return out


def has_tool_fields(path: Path) -> bool:
    """Whether any record may have tool calls or tools: a byte scan, no JSON parsing."""
    with path.open("rb") as fh:
        return any(mentions_tools(line) for line in fh)


def resolve_input(run_dir: Path, input_file: Path | None = None) -> Path:
    """An explicit file, else the deduplicated dataset.jsonl, else the raw output.jsonl."""
    if input_file is not None:
        if not Path(input_file).is_file():
            raise ConfigError(f"--input: {input_file} is not a file")
        return Path(input_file)
    for name in ("dataset.jsonl", "output.jsonl"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise ConfigError(f"{run_dir} has no dataset.jsonl or output.jsonl; give a run directory "
                      "of a finished (or interrupted) run, or pass --input FILE")


def read_records(path: Path, stats: Stats) -> Iterator[dict[str, Any]]:
    """Yield each record with a `messages` list; skip (and warn about) any line that is not
    one, such as the torn last line a crash mid-write leaves."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                torn = "torn line (no newline: a crash mid-write?)" if not line.endswith(b"\n") \
                    else f"not JSON ({exc})"
                _skip(stats, f"{path}:{number}: {torn}")
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("messages"), list):
                _skip(stats, f"{path}:{number}: no 'messages' list")
                continue
            stats.add(rec)
            yield rec


def _skip(stats: Stats, message: str) -> None:
    stats.skipped += 1
    if stats.skipped <= MAX_WARNINGS:
        log.warning("export: skipped %s", message)
    elif stats.skipped == MAX_WARNINGS + 1:
        log.warning("export: more unreadable lines; only the count is reported from here")
