"""Export a run's records as Parquet, a Hugging Face dataset with a card, ShareGPT JSONL or
OpenAI fine-tuning JSONL. Records are read line by line and written in batches, so memory
stays flat however large the run; pyarrow and datasets are imported only when needed."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

from gristmill.dataset.files import atomic_path
from gristmill.errors import ConfigError

log = logging.getLogger("gristmill.export")

EXPORT_FORMATS = ("parquet", "hf", "sharegpt", "openai")
DEFAULT_OUT = dict(parquet="dataset.parquet", hf="hf", sharegpt="sharegpt.jsonl",
                   openai="openai.jsonl")
BATCH = 10_000
SCALARS = ("id", "seed_id", "skill", "agent", "type", "model")
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
MAX_WARNINGS = 5  # a badly damaged file should not flood the terminal


@dataclass
class Stats:
    """What the dataset card reports, gathered while the records stream past."""
    records: int = 0
    skipped: int = 0  # unreadable lines
    prompt_tokens: int = 0
    completion_tokens: int = 0
    skills: Counter = field(default_factory=Counter)  # value -> records
    types: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)

    def add(self, rec: dict[str, Any]) -> None:
        self.records += 1
        for counter, key in ((self.skills, "skill"), (self.types, "type"), (self.models, "model")):
            if rec.get(key) is not None:
                counter[str(rec[key])] += 1
        usage = rec["usage"] if isinstance(rec.get("usage"), dict) else {}
        self.prompt_tokens += _int(usage.get("prompt_tokens")) or 0
        self.completion_tokens += _int(usage.get("completion_tokens")) or 0


def export_run(run_dir: Path, fmt: str, out: Path | None = None,
               input_file: Path | None = None, *, license_id: str | None = None,
               say: Callable[[str], None] | None = None) -> Path:
    """Write the run's records in format `fmt` and return the path written (a folder for hf).
    `say` receives one-line status messages (which input was read, what was written)."""
    say = say or log.info
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of "
                          f"{', '.join(EXPORT_FORMATS)}")
    run_dir = Path(run_dir)
    source = resolve_input(run_dir, input_file)
    out = Path(out) if out is not None else run_dir / "export" / DEFAULT_OUT[fmt]
    say(f"reading {source}")
    stats = Stats()
    records = read_records(source, stats)
    first = next(records, None)  # datasets cannot even load back an empty dataset it saved
    if first is None:
        raise ConfigError(f"{source} holds no readable records; nothing to export")
    records = chain([first], records)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        write_parquet(records, out)
    elif fmt == "hf":
        write_hf(records, out, stats, source, run_dir, license_id)
    else:
        convert = to_sharegpt if fmt == "sharegpt" else to_openai
        write_jsonl(map(convert, records), out)
    skipped = f" ({stats.skipped} unreadable line(s) skipped)" if stats.skipped else ""
    say(f"wrote {stats.records:,} records to {out}{skipped}")
    return out


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


# --- value normalisation: the Parquet schema is fixed, so every value is made to fit it ---

def _str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _messages(rec: dict[str, Any]) -> list[dict[str, str | None]]:
    return [{"role": _str(m.get("role")), "content": _str(m.get("content"))}
            for m in rec.get("messages") or [] if isinstance(m, dict)]


def to_row(rec: dict[str, Any]) -> dict[str, Any]:
    """One record shaped exactly as `arrow_schema()` wants it."""
    row: dict[str, Any] = {key: _str(rec.get(key)) for key in SCALARS}
    row["messages"] = _messages(rec)
    row["lineage"] = [{"id": _str(e.get("id")), "stage": _str(e.get("stage"))}
                      for e in rec.get("lineage") or [] if isinstance(e, dict)]
    usage = rec.get("usage")
    row["usage"] = ({k: _int(usage.get(k)) for k in ("prompt_tokens", "completion_tokens")}
                    if isinstance(usage, dict) else None)
    row["refinements"] = [
        {"round": _int(r.get("round")), "instruction": _str(r.get("instruction")),
         "suggestions": [_str(s) for s in r.get("suggestions") or []]}
        for r in rec.get("refinements") or [] if isinstance(r, dict)]
    return row


def arrow_schema() -> Any:
    import pyarrow as pa

    text = pa.string()
    return pa.schema([
        ("id", text),
        ("messages", pa.list_(pa.struct([("role", text), ("content", text)]))),
        ("skill", text), ("agent", text), ("type", text), ("seed_id", text),
        ("lineage", pa.list_(pa.struct([("id", text), ("stage", text)]))),
        ("model", text),
        ("usage", pa.struct([("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64())])),
        ("refinements", pa.list_(pa.struct([("round", pa.int64()), ("suggestions", pa.list_(text)),
                                            ("instruction", text)])))])


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def write_parquet(records: Iterable[dict[str, Any]], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for chunk in _batched(map(to_row, records), BATCH):
            writer.write_batch(pa.RecordBatch.from_pylist(chunk, schema=schema))


def to_sharegpt(rec: dict[str, Any]) -> dict[str, Any]:
    turns = [{"from": SHAREGPT_FROM.get(m["role"], m["role"]), "value": m["content"]}
             for m in _messages(rec)]
    line: dict[str, Any] = {"id": _str(rec.get("id")), "conversations": turns}
    line.update({k: _str(rec[k]) for k in ("skill", "type") if rec.get(k) is not None})
    return line


def to_openai(rec: dict[str, Any]) -> dict[str, Any]:
    return {"messages": _messages(rec)}  # the fine-tuning API rejects any other key


def write_jsonl(lines: Iterable[dict[str, Any]], out: Path) -> None:
    with atomic_path(out) as tmp, tmp.open("wb") as fh:
        for chunk in _batched(lines, BATCH):
            fh.write(b"".join(orjson.dumps(x, option=orjson.OPT_APPEND_NEWLINE) for x in chunk))


def write_hf(records: Iterable[dict[str, Any]], out: Path, stats: Stats, source: Path,
             run_dir: Path, license_id: str | None) -> None:
    """Parquet first (streamed), then datasets turns it into Arrow shards, built in a
    scratch folder beside `out` and moved into place only when complete."""
    _check_replaceable(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".hf-export-") as scratch:
        parquet, built = Path(scratch) / "dataset.parquet", Path(scratch) / "hf"
        write_parquet(records, parquet)
        os.environ["HF_DATASETS_OFFLINE"] = "1"  # export must never reach for the Hub
        os.environ["HF_HUB_OFFLINE"] = "1"
        from datasets import Dataset

        dataset = Dataset.from_parquet(str(parquet), cache_dir=str(Path(scratch) / "cache"))
        dataset.save_to_disk(str(built))
        del dataset  # its Arrow file lives in the scratch folder, about to be removed
        card = dataset_card(stats, source, run_dir, license_id)
        (built / "README.md").write_text(card, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)  # checked up front: an earlier hf export or an empty folder
        built.rename(out)


def _check_replaceable(out: Path) -> None:
    """An earlier hf export is replaced; never a folder that is something else."""
    earlier = (out / "state.json").is_file() and (out / "dataset_info.json").is_file()
    if out.exists() and not earlier and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an earlier hf export; choose another --out")


# --- the dataset card (README.md of the hf folder) ---

FIELDS = (("id", "unique id of the record"),
          ("messages", "the conversation: {role, content} turns; the system one is optional"),
          ("skill", "the skill exercised (e.g. reading_comprehension); null in generic pipelines"),
          ("agent", "the agent flow that wrote it; null when not applicable"),
          ("type", "the kind of instruction within the skill; null when not applicable"),
          ("seed_id", "id of the seed document it was milled from"),
          ("lineage", "every intermediate item from the seed on: {id, stage}"),
          ("model", "the model that generated it"),
          ("usage", "prompt and completion tokens spent on it, over all stages"),
          ("refinements", "suggest-and-edit rounds: {round, suggestions, instruction}"))
FLOW_SETTINGS = ("agents_per_seed", "refine_rounds", "skills_per_seed")
SIZES = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
         (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"))


def size_category(n: int) -> str:
    return next((label for limit, label in SIZES if n < limit), "1B<n<10B")


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(title: str, counts: Counter, total: int) -> list[str]:
    if not counts:
        return [f"No record has a `{title}` field (a generic pipeline).", ""]
    rows = [f"| {title} | records | share |", "| --- | ---: | ---: |"]
    pairs = counts.most_common() + [("(none)", total - sum(counts.values()))]
    return rows + [f"| {_cell(k)} | {n:,} | {n / total:.1%} |" for k, n in pairs if n] + [""]


def dataset_card(stats: Stats, source: Path, run_dir: Path, license_id: str | None) -> str:
    import yaml

    name = run_dir.resolve().name
    front = {"license": license_id or "unknown", "task_categories": ["text-generation"],
             "tags": ["synthetic", "instruction-tuning", "agentinstruct"],
             "size_categories": [size_category(stats.records)], "pretty_name": name}
    models = ", ".join(f"`{m}` ({n:,})" for m, n in stats.models.most_common()) or "not recorded"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {name}", "",
             "Synthetic instruction-tuning conversations generated by gristmill from seed "
             "documents, in the shape of orca-agentinstruct-1M (`messages`, `skill`, `type`) "
             "plus lineage back to the seed.", "",
             f"- records: **{stats.records:,}** (from `{source.name}`"
             + (f"; {stats.skipped:,} unreadable line(s) skipped)" if stats.skipped else ")"),
             f"- tokens: {stats.prompt_tokens:,} prompt + {stats.completion_tokens:,} "
             f"completion = {stats.prompt_tokens + stats.completion_tokens:,}",
             f"- models: {models}", "",
             "Load it with `datasets.load_from_disk(\"<this folder>\")`.", "",
             "## Records per skill", "", *_table("skill", stats.skills, stats.records),
             "## Records per type", "", *_table("type", stats.types, stats.records),
             "## Fields", "", "| field | meaning |", "| --- | --- |",
             *[f"| `{f}` | {_cell(m)} |" for f, m in FIELDS], "",
             "## How it was generated", "", *_generation(run_dir), ""]
    return "\n".join(lines)


def _generation(run_dir: Path) -> list[str]:
    """Pipeline, stages, skills and models from config.yaml; nothing else from it (no URLs,
    headers or key variable names), so the card can be published as it is."""
    from gristmill.config.yaml_file import read_yaml

    path, config = run_dir / "config.yaml", None
    try:
        config = read_yaml(path) if path.is_file() else None
    except ConfigError as exc:  # the card is still useful without it
        log.warning("export: the card will not describe the pipeline: %s", exc)
    if not isinstance(config, dict):
        return ["The run's `config.yaml` was not available."]
    stages = [s for s in config.get("stages") or [] if isinstance(s, dict)]
    flow = config.get("agentinstruct") if isinstance(config.get("agentinstruct"), dict) else {}
    backends = config.get("backends") if isinstance(config.get("backends"), dict) else {}
    lines = [f"- pipeline: `{_cell(config.get('name'))}`, run by gristmill"]
    if stages:
        lines.append("- stages: " + " → ".join(f"`{_cell(s.get('name'))}`" for s in stages))
    if flow:
        lines.append("- flow: AgentInstruct (content transformation → seed instruction "
                     "generation → suggester-editor refinement → answer), "
                     + ", ".join(f"{k} {flow[k]}" for k in FLOW_SETTINGS if k in flow))
    if skills := _skills(config):
        lines.append("- skills configured: " + ", ".join(f"`{_cell(s)}`" for s in skills))
    lines += [f"- backend `{_cell(k)}`: model `{_cell(b.get('model'))}`"
              for k, b in backends.items() if isinstance(b, dict)]
    overrides = [(s.get("name"), s) for s in stages] + list(flow.items())
    lines += [f"- `{_cell(name)}` uses model `{_cell(s['model'])}`"
              for name, s in overrides if isinstance(s, dict) and s.get("model")]
    return lines


def _skills(config: dict[str, Any]) -> list[str]:
    """`skills` at the top level or one level down, as names, a mapping, or {name: ...} items."""
    nested = (v.get("skills") for v in config.values() if isinstance(v, dict))
    found = config.get("skills") or next((f for f in nested if f), None)
    if isinstance(found, dict):
        return [str(k) for k in found]
    if isinstance(found, list):
        return [str(s.get("name")) if isinstance(s, dict) else str(s) for s in found]
    return []
