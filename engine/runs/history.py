"""Prompt history: every config a run ran with, with its skill templates as they were.

    RUN/history/v1/config.yaml    the resolved config of the first session
    RUN/history/v1/skills.yaml    the files of the skill folders the flow used (relative path ->
                                  text), absent for a staged flow (its prompts are in the config)
    RUN/history/v1/version.json   when, and why (the answer-changing fields that differed)

A version is written when config.yaml is (a new run, or a resume with --force) and its files
differ from the newest version's, so a plain resume adds none. `prompt_delta` is the unified
diff between two versions: the prompt deltas an assertion proposer reads."""

from __future__ import annotations

import difflib
import re
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from gristmill.dataset.files import read_json, write_atomic
from gristmill.errors import ConfigError

FOLDER = "history"
VERSION = re.compile(r"^v(\d+)$")
FILES = ("config.yaml", "skills.yaml")


def skill_files(config: Any) -> dict[str, str]:
    """The text of every file of the skill folders the AgentInstruct flow uses, by path."""
    if config.agentinstruct is None:
        return {}
    from gristmill.flows.skills import default_skills_dir

    root = config.agentinstruct.skills_dir or default_skills_dir()
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8", errors="replace")
            for name in config.agentinstruct.skills
            for p in sorted((root / name).rglob("*")) if p.is_file()}


def versions(run_dir: Path) -> dict[int, Path]:
    folder = Path(run_dir) / FOLDER
    found = {int(m.group(1)): p for p in folder.iterdir()
             if (m := VERSION.match(p.name)) and p.is_dir()} if folder.is_dir() else {}
    return dict(sorted(found.items()))


def read_version(folder: Path) -> dict[str, str]:
    """A version's files by name; skills.yaml unfolded into `skills/<path>` entries."""
    files = {"config.yaml": (folder / "config.yaml").read_text(encoding="utf-8")}
    if (folder / "skills.yaml").is_file():
        skills = yaml.safe_load((folder / "skills.yaml").read_text(encoding="utf-8")) or {}
        files.update({f"skills/{k}": v for k, v in sorted(skills.items())})
    return files


def _dump(data: dict[str, str]) -> str:
    return yaml.safe_dump(data, sort_keys=True, allow_unicode=True, width=100)


def record_version(run_dir: Path, config_text: str, config: Any,
                   changed: list[str] | None = None) -> Path | None:
    """Write the next version if the config or the skill files differ from the newest one's;
    its folder, or None when nothing changed."""
    skills = skill_files(config)
    found = versions(run_dir)
    if found:
        newest = found[next(reversed(found))]
        same_skills = (newest / "skills.yaml").is_file() == bool(skills) and (
            not skills or (newest / "skills.yaml").read_text(encoding="utf-8") == _dump(skills))
        if same_skills and (newest / "config.yaml").read_text(encoding="utf-8") == config_text:
            return None
    number = max(found, default=0) + 1
    folder = Path(run_dir) / FOLDER / f"v{number}"
    folder.mkdir(parents=True, exist_ok=True)
    if skills:
        write_atomic(folder / "skills.yaml", _dump(skills).encode())
    write_atomic(folder / "version.json", orjson.dumps(
        {"version": number, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
         "changed": changed or []}, option=orjson.OPT_INDENT_2))
    write_atomic(folder / "config.yaml", config_text.encode())  # last: the version is whole
    return folder


def _version(run_dir: Path, number: int | None) -> tuple[int, Path]:
    found = {n: p for n, p in versions(run_dir).items() if (p / "config.yaml").is_file()}
    if not found:
        raise ConfigError(f"{run_dir}: no history/v<N>/ (the run predates prompt history, or "
                          "never started)")
    number = next(reversed(found)) if number is None else number
    if number not in found:
        raise ConfigError(f"{run_dir}: no version v{number}; it has "
                          f"{', '.join(f'v{n}' for n in found)}")
    return number, found[number]


def prompt_delta(old_run: Path, new_run: Path | None = None, old: int | None = None,
                 new: int | None = None) -> str:
    """The unified diff from version `old` of `old_run` to version `new` of `new_run` (the same
    run by default; the newest version when a number is None): config and skill files."""
    new_run = old_run if new_run is None else new_run
    a_number, a_path = _version(old_run, old)
    b_number, b_path = _version(new_run, new)
    a, b = read_version(a_path), read_version(b_path)
    a_tag = f"{Path(old_run).name}/v{a_number}" if new_run != old_run else f"v{a_number}"
    b_tag = f"{Path(new_run).name}/v{b_number}" if new_run != old_run else f"v{b_number}"
    out: list[str] = []
    for name in sorted(a.keys() | b.keys()):
        out.extend(difflib.unified_diff(
            a.get(name, "").splitlines(keepends=True), b.get(name, "").splitlines(keepends=True),
            f"{a_tag}/{name}", f"{b_tag}/{name}"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def listing(run_dir: Path) -> list[str]:
    """One line per version: number, when, what changed."""
    lines = []
    for number, folder in versions(run_dir).items():
        meta = read_json(folder / "version.json") or {}
        changed = meta.get("changed") or []
        why = "first run" if number == 1 else (
            f"changed: {', '.join(changed)}" if changed else "config or skill files changed")
        skills = len(read_version(folder)) - 1
        lines.append(f"v{number}  {meta.get('written', '?')}  {skills} skill file(s)  {why}")
    return lines
