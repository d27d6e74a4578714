"""Jinja2 prompt templates: compiled once, checked against the variables a stage can see."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta

from .config import PipelineConfig
from .errors import ConfigError

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                          keep_trailing_newline=False)
BASE_VARIABLES = frozenset({"seed", "variant", "id", "seed_id"})


@lru_cache(maxsize=512)
def compile_template(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def render(source: str, variables: dict[str, Any]) -> str:
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
        if stage.system:
            _check(stage.system, f"stages[{i}].system", known)
        _check(stage.prompt, f"stages[{i}].prompt", known)
        known.add(stage.name)
    for i, message in enumerate(config.record or []):
        _check(message.content, f"record[{i}].content", known)
