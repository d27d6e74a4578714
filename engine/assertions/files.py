"""Assertion files: `RUN/assertions/assertions-v<N>.yaml` (N counts up), written by
`gristmill assertions suggest` and named in a config as `validators: {assertions: PATH}`.

    version: assertions-v1
    created_at: <unix time>
    provenance: {labels: ..., train: ..., held_out: ..., judge_version: ..., alpha: ..., tau: ...,
                 coverage: ..., coverage_ci: [...], ffr: ..., ffr_ci: [...]}
    assertions:
      - {id: regex-1a2b3c4d, kind: regex, pattern: ..., ..., description: ...,
         stats: {catches: ..., coverage: ..., coverage_ci: [...], ffr: ..., ffr_ci: [...]}}

Reading one back checks every entry against the vocabulary; `id`, `description` and `stats`
are what the writer reported and are not parameters."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gristmill.assertions.vocabulary import Assertion, LlmCriterion, as_data, parse_assertion
from gristmill.errors import ConfigError

FOLDER = "assertions"
VERSION_FILE = re.compile(r"^assertions-v(\d+)\.yaml$")
REPORTED = ("id", "description", "stats")  # written for people, not read as parameters


@dataclass(frozen=True)
class AssertionFile:
    assertions: list[Assertion]
    provenance: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # by assertion id
    version: str = ""

    @property
    def deterministic(self) -> list[Assertion]:
        return [a for a in self.assertions if a.deterministic]

    @property
    def criteria(self) -> list[LlmCriterion]:
        return [a for a in self.assertions if isinstance(a, LlmCriterion)]


def versions(run_dir: Path) -> dict[int, Path]:
    folder = Path(run_dir) / FOLDER
    found = {int(m.group(1)): p for p in folder.iterdir()
             if (m := VERSION_FILE.match(p.name))} if folder.is_dir() else {}
    return dict(sorted(found.items()))


def newest(run_dir: Path) -> Path | None:
    return next(reversed(versions(run_dir).values()), None)


def write_assertions(run_dir: Path, assertions: list[Assertion], provenance: dict[str, Any],
                     stats: dict[str, dict[str, Any]]) -> Path:
    """The next `assertions-v<N>.yaml` of the run."""
    from gristmill.dataset.files import write_atomic

    number = max(versions(run_dir), default=0) + 1
    path = Path(run_dir) / FOLDER / f"assertions-v{number}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"id": a.id, **as_data(a), "description": a.describe(),
                **({"stats": stats[a.id]} if a.id in stats else {})} for a in assertions]
    document = {"version": f"assertions-v{number}", "created_at": round(time.time(), 3),
                "provenance": provenance, "assertions": entries}
    write_atomic(path, yaml.safe_dump(document, sort_keys=False, allow_unicode=True,
                                      width=100).encode())
    return path


def read_assertions(path: Path) -> AssertionFile:
    """An assertion file, every entry checked (ConfigError naming the entry and the fault)."""
    from gristmill.config.yaml_file import read_yaml

    data = read_yaml(path)
    entries = data.get("assertions")
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: no `assertions:` list; give a file written by "
                          "`gristmill assertions suggest`")
    assertions, stats = [], {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: assertions[{index}] is not a mapping")
        try:
            assertion = parse_assertion({k: v for k, v in entry.items() if k not in REPORTED})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}"
                                 for e in exc.errors())
            raise ConfigError(f"{path}: assertions[{index}]: {problems}") from None
        assertions.append(assertion)
        if isinstance(entry.get("stats"), dict):
            stats[assertion.id] = entry["stats"]
    names = [c.name for c in assertions if isinstance(c, LlmCriterion)]
    if len(names) != len(set(names)):
        raise ConfigError(f"{path}: two llm assertions share a name; names: {names}")
    return AssertionFile(assertions, data.get("provenance") or {}, stats,
                         str(data.get("version") or ""))
