"""Validators by name, built from config specs.

A spec is a bare name (`"refusal"`) or a mapping `{"name": "repetition", "ngram": 6}`; the
other keys are the validator's params, checked by its `Params` model. `"enabled": false`
turns a validator off (useful to drop one of the defaults with `merge_specs`). Unknown names,
unknown params and bad values raise `ConfigError` naming the validator and its params.

    stream = build_stream(DEFAULT_STREAM)                 # once per stage
    final = build_final(merge_specs(DEFAULT_FINAL, stage_specs), base_dir=config_dir)
    check = start_checks(stream, context)                 # per request
    ... check.feed(delta.text) ... check.finish() ... run_final(final, text, context)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Union, get_origin

from pydantic import ValidationError

from gristmill.errors import ConfigError

from gristmill.validation.assertions import Assertions
from gristmill.validation.base import FinalValidator, StreamValidator
from gristmill.validation.decontam import Decontamination
from gristmill.validation.final import Custom, Length, Schema, Truncated
from gristmill.validation.json_prefix import JsonPrefix
from gristmill.validation.language import Language
from gristmill.validation.leftovers import Placeholders, RestatesQuestion
from gristmill.validation.repetition import Repetition
from gristmill.validation.shapes import Choice, ElementIds
from gristmill.validation.stream import Forbidden, MaxLength, Refusal

Spec = Union[str, Mapping[str, Any]]

REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Add a validator class: it has `name`, `kind` ('stream' or 'final'), a `Params` model
    and `__init__(params)`. Usable as a decorator."""
    if getattr(cls, "kind", None) not in ("stream", "final"):
        raise TypeError(f"{cls.__name__}.kind must be 'stream' or 'final'")
    REGISTRY[cls.name] = cls
    return cls


for _cls in (Refusal, MaxLength, Repetition, JsonPrefix, Forbidden, Language,
             Schema, Length, Placeholders, RestatesQuestion, Truncated, Decontamination, Custom,
             Choice, ElementIds, Assertions):
    register(_cls)

# On by default. json_prefix and schema act on structured requests only; language uses
# `context.language` (default "en"); max_length is a runaway guard far above usual answers.
DEFAULT_STREAM: list[dict[str, Any]] = [
    {"name": "refusal"},
    {"name": "json_prefix"},
    {"name": "repetition"},
    {"name": "language"},
    {"name": "max_length", "max_tokens": 16384},
]
DEFAULT_FINAL: list[dict[str, Any]] = [
    {"name": "truncated"},
    {"name": "schema"},
    {"name": "placeholders"},
    {"name": "restates_question"},
]


def spec_name(spec: Spec) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"]
    raise ConfigError(f"a validator spec is a name or a mapping with a 'name' key, got {spec!r}; "
                      f"known validators: {', '.join(sorted(REGISTRY))}")


def merge_specs(defaults: Iterable[Spec], overrides: Iterable[Spec]) -> list[Spec]:
    """Defaults with overrides applied: an override replaces the default of the same name
    (keeping its place), `{"name": x, "enabled": false}` removes it, new names are appended.
    `custom` specs are always appended (there may be several)."""
    merged: dict[str, Spec] = {}
    extra: list[Spec] = []
    for spec in defaults:
        merged[spec_name(spec)] = spec
    for spec in overrides:
        name = spec_name(spec)
        if name == "custom":
            extra.append(spec)
        else:
            merged[name] = spec
    return [s for s in (*merged.values(), *extra) if _enabled(s)]


def _enabled(spec: Spec) -> bool:
    if isinstance(spec, str):
        return True
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"validator {spec_name(spec)!r}: 'enabled' must be true or false, "
                          f"got {enabled!r}")
    return enabled


def build(spec: Spec, *, base_dir: Path | None = None) -> Any:
    """One validator from its spec (ConfigError when the name or the params are wrong)."""
    name = spec_name(spec)
    cls = REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown validator {name!r}; known validators: "
                          f"{', '.join(sorted(REGISTRY))}")
    raw = {} if isinstance(spec, str) else {k: v for k, v in spec.items()
                                            if k not in ("name", "enabled")}
    try:
        params = cls.Params.model_validate(raw, context={"base_dir": base_dir})
        return cls(params)
    except ValidationError as exc:
        raise ConfigError(f"validator {name!r}: {_problems(exc)}; "
                          f"{describe_params(cls)}") from None
    except ValueError as exc:  # a check in __init__ (e.g. a missing optional package)
        raise ConfigError(f"validator {name!r}: {exc}; {describe_params(cls)}") from None
    except OSError as exc:  # a file it reads at build time
        raise ConfigError(f"validator {name!r}: cannot read {exc.filename!r}: "
                          f"{exc.strerror or exc}") from None


def build_all(specs: Iterable[Spec], *, base_dir: Path | None = None
              ) -> tuple[list[StreamValidator], list[FinalValidator]]:
    """Mixed specs split by kind: (streaming validators, final validators)."""
    stream, final = [], []
    for spec in specs:
        if _enabled(spec):
            validator = build(spec, base_dir=base_dir)
            (stream if validator.kind == "stream" else final).append(validator)
    return stream, final


def build_stream(specs: Iterable[Spec], *, base_dir: Path | None = None) -> list[StreamValidator]:
    return _build_kind(specs, "stream", base_dir)


def build_final(specs: Iterable[Spec], *, base_dir: Path | None = None) -> list[FinalValidator]:
    return _build_kind(specs, "final", base_dir)


def _build_kind(specs: Iterable[Spec], kind: str, base_dir: Path | None) -> list[Any]:
    out = []
    for spec in specs:
        name = spec_name(spec)
        cls = REGISTRY.get(name)
        if cls is not None and cls.kind != kind:
            other = "final" if kind == "stream" else "streaming"
            raise ConfigError(f"validator {name!r} is a {other} validator, not a "
                              f"{'streaming' if kind == 'stream' else 'final'} one; "
                              f"list it with the {other} validators")
        if _enabled(spec):
            out.append(build(spec, base_dir=base_dir))
    return out


def describe_params(cls: type) -> str:
    """'allowed params: window (int, default 200), ...' for error messages."""
    fields = cls.Params.model_fields
    if not fields:
        return "it takes no params"
    parts = []
    for key, info in fields.items():
        ann = info.annotation
        plain = get_origin(ann) is None and isinstance(ann, type)
        kind = (ann.__name__ if plain else str(ann)).replace("typing.", "").replace("pathlib.", "")
        if info.is_required():
            parts.append(f"{key} ({kind}, required)")
        else:
            default = info.get_default(call_default_factory=True)
            shown = repr(default) if len(repr(default)) <= 30 else "built-in list"
            parts.append(f"{key} ({kind}, default {shown})")
    return "allowed params: " + ", ".join(parts)


def _problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "params"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown param {where!r}")
        elif error["type"] == "missing":
            problems.append(f"missing required param {where!r}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message} (got {error.get('input')!r})"
                            if where != "params" else message)
    return "; ".join(problems)
