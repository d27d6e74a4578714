"""Prompt templates: Jinja2, compiled once, checked against the variables a stage can see.

Most templates only substitute variables into text ("Passage: {{ seed }}"). Those render by
joining their parts directly, which skips Jinja's context set-up per call (the throughput
profile found that set-up a large share of a request's CPU: benchmarks/RESULTS.md); anything else (filters, loops, conditions) renders with Jinja. Both
give the same text (a property test checks it)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping, Protocol

import jinja2
from jinja2 import meta

from gristmill.config.pipeline import PipelineConfig
from gristmill.errors import ConfigError

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                          keep_trailing_newline=False)
BASE_VARIABLES = frozenset({"seed", "variant", "id", "seed_id", "kind", "language", "elements",
                            "element_ids", "page_title", "table"})
_SIMPLE_VAR = re.compile(r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")
_ANY_TAG = re.compile(r"\{[{%#]|[}%#]\}")


class Template(Protocol):
    def render(self, variables: Mapping[str, Any]) -> str: ...


class SubstitutionTemplate:
    """Literal text with `{{ name }}` holes; renders like Jinja with str() of each value."""

    __slots__ = ("_parts",)

    def __init__(self, parts: list[tuple[bool, str]]) -> None:
        self._parts = parts  # (is_variable, text or name)

    def render(self, variables: Mapping[str, Any]) -> str:
        return "".join([str(variables[text]) if is_var else text for is_var, text in self._parts])


def _substitution_parts(source: str) -> list[tuple[bool, str]] | None:
    if "-}}" in source or "{{-" in source or "\r" in source:
        return None  # whitespace control, newline normalisation: leave them to Jinja
    parts: list[tuple[bool, str]] = []
    pos = 0
    for match in _SIMPLE_VAR.finditer(source):
        parts.append((False, source[pos:match.start()]))
        parts.append((True, match.group(1)))
        pos = match.end()
    parts.append((False, source[pos:]))
    if any(not is_var and _ANY_TAG.search(text) for is_var, text in parts):
        return None
    last = parts[-1][1]
    if last.endswith("\n"):  # Jinja drops one trailing newline (keep_trailing_newline=False)
        parts[-1] = (False, last[:-1])
    return [p for p in parts if p[0] or p[1]]


@lru_cache(maxsize=512)
def compile_template(source: str) -> Template:
    parts = _substitution_parts(source)
    return SubstitutionTemplate(parts) if parts is not None else _ENV.from_string(source)


def render(source: str, variables: Mapping[str, Any]) -> str:
    return compile_template(source).render(variables)


def _check(source: str, where: str, known: set[str]) -> None:
    try:
        used = meta.find_undeclared_variables(_ENV.parse(source))
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{where}: template syntax error on line {exc.lineno}: {exc.message}") from None
    unknown = sorted(used - known)
    if unknown:
        raise ConfigError(f"{where}: unknown template variable(s) {unknown}; "
                          f"available here: {sorted(known)}")


def check_templates(config: PipelineConfig) -> None:
    """Every template parses and uses only variables defined before it runs."""
    known = set(BASE_VARIABLES)
    for i, stage in enumerate(config.stages):
        if stage.retrieve is not None:  # its query renders first, then its prompt sees more
            _check(stage.retrieve.query, f"stages[{i}].retrieve.query", known)
            known |= {"passages", "distractors"}
        if stage.system:
            _check(stage.system, f"stages[{i}].system", known)
        _check(stage.prompt, f"stages[{i}].prompt", known)
        known.add(stage.name)
    for i, message in enumerate(config.record or []):
        _check(message.content, f"record[{i}].content", known)
