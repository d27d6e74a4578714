"""Assertion files named by `validators: {assertions: PATH}`: their LLM criteria (`kind: llm`
entries) are questions for the judge, so they join the judge's criteria when the config is
loaded (docs/assertions.md). The other entries are checked by the `assertions` validator when
a run builds its validators (the config layer reads the file as plain YAML: it sits below the
assertions package)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gristmill.config.judge import CriterionConfig
from gristmill.errors import ConfigError


def assertion_files(config: Any) -> dict[str, Path]:
    """Field path -> the assertion file it names, over a pipeline config's validators."""
    found = {f"stages[{i}].validators": s.validators for i, s in enumerate(config.stages)}
    flow = config.agentinstruct
    if flow is not None:
        found["agentinstruct.validators"] = flow.validators
        found |= {f"agentinstruct.{kind}.validators": k.validators
                  for kind, k in flow.kinds().items() if k.validators}
    return {f"{where}.assertions": v.assertions for where, v in found.items()
            if v.assertions is not None}


def llm_criteria(path: Path) -> list[CriterionConfig]:
    """The file's `kind: llm` entries as judge criteria (ConfigError naming a bad one)."""
    from gristmill.config.yaml_file import read_yaml

    entries = read_yaml(path).get("assertions")
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: no `assertions:` list; give a file written by "
                          "`gristmill assertions suggest`")
    out = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("kind") == "llm":
            try:
                out.append(CriterionConfig(name=entry.get("name"), question=entry.get("question")))
            except ValidationError as exc:
                raise ConfigError(f"{path}: assertions[{index}] (llm): "
                                  f"{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
    return out


def join_assertion_criteria(config: Any) -> None:
    """Append each file's LLM criteria to `config.judge` (once: a resumed run's config has
    them already). ValueError naming the field for a bad file, or for criteria without a judge."""
    for where, path in assertion_files(config).items():
        try:
            criteria = llm_criteria(path)
        except ConfigError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if criteria and config.judge is None:
            raise ValueError(f"{where}: {path} has LLM criteria ("
                             f"{', '.join(c.name for c in criteria)}), which the judge answers; "
                             "add a `judge:` section (e.g. judge: {on_fail: reject}) or remove "
                             "them from the file")
        if config.judge is not None:
            known = {c.name for c in config.judge.criteria}
            config.judge.criteria += [c for c in criteria if c.name not in known]
