"""Shared pieces of the config models: the strict base model and config-relative paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Template variables every item or record has, so no stage may be named after one: the seed's
# (`seed`, `kind`, `language` and the structured forms `elements`, `element_ids`,
# `page_title`, `table`, set by each flow's first item), a record's (`id`, `seed_id`),
# a fan-out's `variant`, the judge's verdict (`judge`) and what `retrieve` adds (`passages`,
# `distractors`).
RESERVED_NAMES = frozenset({"seed", "kind", "language", "id", "seed_id", "variant", "judge",
                            "elements", "element_ids", "page_title", "table", "passages",
                            "distractors"})


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's folder, not the working directory."""
    base = (info.context or {}).get("base_dir")
    path = path.expanduser()
    return path if path.is_absolute() or base is None else (Path(base) / path).resolve()


RelPath = Annotated[Path, AfterValidator(_resolve)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def Field(default: Any = PydanticUndefined, *, answers: bool, **kwargs: Any) -> Any:  # noqa: N802
    """pydantic's Field, and whether the field changes the answers a run gets: a resume with
    such a change would mix two datasets, so it is refused without --force. What is asked,
    of which model, with which sampling, seeds, prompts and checks changes answers; where
    requests go, how many at once, how fast and how patiently does not."""
    extra = {**(kwargs.pop("json_schema_extra", None) or {}), "answers": answers}
    return pydantic.Field(default, json_schema_extra=extra, **kwargs)


def changes_answers(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    if not isinstance(extra, dict) or not isinstance(extra.get("answers"), bool):
        raise TypeError(f"a config field without `answers=`: {field!r}")
    return extra["answers"]
