"""Which config changes would change answers. Resuming a run with such a change would mix two
datasets, so it is refused (unless --force) with the fields that changed. Each field declares
whether it changes answers (`Field(answers=...)` in the models); this walks the models beside
the two dumped configs."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from gristmill.config.base import changes_answers


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types a field may hold: each member of a union, else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) \
        else None


def _values(annotation: Any, value: Any, path: str) -> dict[str, Any]:
    """The answer-changing values under one field, by dotted path: into a model, a list of
    models or a mapping of models; anything else is one value."""
    for member in _members(annotation):
        args = typing.get_args(member)
        if (model := _model(member)) and isinstance(value, dict):
            return answer_values(model, value, path)
        if typing.get_origin(member) is list and args and (model := _model(args[0])) \
                and isinstance(value, list):
            return {k: v for i, item in enumerate(value) if isinstance(item, dict)
                    for k, v in answer_values(model, item, f"{path}[{i}]").items()}
        if typing.get_origin(member) is dict and len(args) == 2 \
                and (model := _model(args[1])) and isinstance(value, dict):
            return {k: v for key, item in value.items() if isinstance(item, dict)
                    for k, v in answer_values(model, item, f"{path}.{key}").items()}
    return {path: value}


def answer_values(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every answer-changing value of `data` (a dumped `model`) by dotted path; keys the model
    does not know are kept too (compared, never ignored). A field missing from `data` (a run
    started before the field existed) counts as its default: a new field's default keeps
    the earlier behaviour."""
    out: dict[str, Any] = {}
    known = set()
    for name, field in model.model_fields.items():
        key = field.alias or name
        known.add(key)
        if not changes_answers(field) or (key not in data and field.is_required()):
            continue
        value = data[key] if key in data else \
            to_jsonable_python(field.get_default(call_default_factory=True))
        out.update(_values(field.annotation, value, f"{prefix}.{key}" if prefix else key))
    for key in data.keys() - known:
        out[f"{prefix}.{key}" if prefix else key] = data[key]
    return out


def answer_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted paths whose answer-changing values differ between two dumped pipeline configs."""
    from gristmill.config.pipeline import PipelineConfig

    a, b = answer_values(PipelineConfig, old), answer_values(PipelineConfig, new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
