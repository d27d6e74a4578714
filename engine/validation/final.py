"""Final validators: checks of the whole answer, once it is complete.

schema              structured answers parse as JSON and validate against the schema
length              character and word bounds
truncated           empty, cut at max_tokens, or an instruction/answer pair with an empty side
custom              a user function `(text, context) -> reason | None`
(placeholders and restates_question live in `leftovers.py`, decontamination in `decontam.py`.)
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, ClassVar, Iterator

import orjson
from pydantic import Field, field_validator, model_validator

from gristmill.validation import jsonschema_lite
from gristmill.validation.base import Context, Params, Rejection, quote


def parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None) or (None, the parser's complaint)."""
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:
        return None, str(exc)


def strings_in(value: Any) -> Iterator[str]:
    """Every string value (not key) inside a parsed JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


# -- schema -------------------------------------------------------------------------------
class Schema:
    """Structured answers (`context.structured`) must be JSON and, when `context.schema` is
    set, valid against it. `jsonschema` is used when installed, else a built-in subset."""

    name: ClassVar[str] = "schema"
    kind: ClassVar[str] = "final"

    class Params(Params):
        engine: str = Field("auto", pattern="^(auto|jsonschema|lite)$", description="'auto': "
                            "jsonschema if installed, else the built-in subset validator.")

    def __init__(self, params: "Schema.Params") -> None:
        self.params = params
        self._validators: dict[bytes, Any] = {}  # compiled jsonschema validators by schema
        self._jsonschema = _import_jsonschema() if params.engine != "lite" else None
        if params.engine == "jsonschema" and self._jsonschema is None:
            raise ValueError("engine 'jsonschema' needs the jsonschema package installed")

    def check(self, text: str, context: Context) -> Rejection | None:
        if not context.structured:
            return None
        value, problem = parse_json(text)
        if problem is not None:
            return Rejection("schema", f"not valid JSON ({problem}): {quote(text)}")
        if context.schema is None:
            return None
        error = self._first_error(value, context.schema)
        if error is None:
            return None
        path, message = error
        return Rejection("schema", f"schema violation at {path}: {message[:200]}")

    def _first_error(self, value: Any, schema: dict[str, Any]) -> tuple[str, str] | None:
        if self._jsonschema is None:
            return jsonschema_lite.first_error(value, schema)
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        validator = self._validators.get(key)
        if validator is None:
            if len(self._validators) >= 64:
                self._validators.clear()
            validator = self._jsonschema.validators.validator_for(schema)(schema)
            self._validators[key] = validator
        error = self._jsonschema.exceptions.best_match(validator.iter_errors(value))
        return None if error is None else (error.json_path, error.message)


def _import_jsonschema() -> Any:
    try:
        import jsonschema  # a dev dependency: optional at run time
    except ImportError:
        return None
    return jsonschema


# -- length -------------------------------------------------------------------------------
class Length:
    """Character and word bounds on the answer (stripped)."""

    name: ClassVar[str] = "length"
    kind: ClassVar[str] = "final"

    class Params(Params):
        min_chars: int | None = Field(None, ge=0, description="Fewest characters.")
        max_chars: int | None = Field(None, ge=1, description="Most characters.")
        min_words: int | None = Field(None, ge=0, description="Fewest words.")
        max_words: int | None = Field(None, ge=1, description="Most words.")

        @model_validator(mode="after")
        def _some(self) -> "Length.Params":
            if all(v is None for v in (self.min_chars, self.max_chars, self.min_words,
                                       self.max_words)):
                raise ValueError("give at least one of min_chars, max_chars, min_words, max_words")
            return self

    def __init__(self, params: "Length.Params") -> None:
        self.p = params

    def check(self, text: str, context: Context) -> Rejection | None:
        text, p = text.strip(), self.p
        chars = len(text)
        if p.min_chars is not None and chars < p.min_chars:
            return Rejection("length", f"too short: {chars} characters < min_chars "
                             f"{p.min_chars}: {quote(text)}")
        if p.max_chars is not None and chars > p.max_chars:
            return Rejection("length", f"too long: {chars} characters > max_chars {p.max_chars}")
        if p.min_words is None and p.max_words is None:
            return None
        words = len(text.split())
        if p.min_words is not None and words < p.min_words:
            return Rejection("length", f"too short: {words} words < min_words {p.min_words}: "
                             f"{quote(text)}")
        if p.max_words is not None and words > p.max_words:
            return Rejection("length", f"too long: {words} words > max_words {p.max_words}")
        return None


# -- truncated ----------------------------------------------------------------------------
class Truncated:
    """An empty answer, an answer cut at max_tokens (`finish_reason == "length"`), or an
    instruction/answer pair with an empty side: in the record's values, or in an object of
    a structured answer that has two or more of `pair_fields`."""

    name: ClassVar[str] = "truncated"
    kind: ClassVar[str] = "final"

    class Params(Params):
        pair_fields: list[str] = Field(default_factory=lambda: ["instruction", "answer",
                                                                "question", "response"],
                                       description="Keys of an instruction/answer pair; an "
                                       "empty one rejects.")
        reject_length: bool = Field(True, description="Reject finish_reason 'length'.")

    def __init__(self, params: "Truncated.Params") -> None:
        self.p = params

    def check(self, text: str, context: Context) -> Rejection | None:
        if not text or text.isspace():  # `not text.strip()` without copying the answer
            return Rejection("truncated", "empty answer")
        if self.p.reject_length and context.finish_reason == "length":
            return Rejection("truncated", "cut at max_tokens (finish_reason 'length'), ends "
                             f"with {quote(text[-QUOTE_TAIL:])}")
        if (empty := self._empty_side(context.record)) is not None:
            return Rejection("truncated", f"the record's {empty!r} is empty")
        if context.structured:
            value, problem = parse_json(text)
            if problem is None and (where := self._empty_pair(value, "$")) is not None:
                return Rejection("truncated", f"a pair with an empty side at {where}")
        return None

    def _empty_side(self, values: dict[str, Any]) -> str | None:
        present = [f for f in self.p.pair_fields if isinstance(values.get(f), str)]
        if len(present) < 2:
            return None
        return next((f for f in present if not values[f].strip()), None)

    def _empty_pair(self, value: Any, path: str) -> str | None:
        if isinstance(value, dict):
            if (empty := self._empty_side(value)) is not None:
                return f"{path}.{empty}"
            children = ((f"{path}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            children = ((f"{path}[{i}]", v) for i, v in enumerate(value))
        else:
            return None
        return next((w for p, v in children if (w := self._empty_pair(v, p)) is not None), None)


QUOTE_TAIL = 40


# -- custom -------------------------------------------------------------------------------
CustomFunction = Callable[[str, Context], "str | None"]


def import_callable(spec: str) -> CustomFunction:
    """'package.module:function' -> the function (ValueError saying what failed)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"callable must look like 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} for {spec!r}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    return target


class Custom:
    """A user function `(text, context) -> str | None`: a returned non-empty string is the
    rejection reason. Its exceptions propagate (a broken check should be loud)."""

    name: ClassVar[str] = "custom"
    kind: ClassVar[str] = "final"

    class Params(Params):
        callable: str = Field(description="'package.module:function' taking (text, context) "
                              "and returning a reason or None.")
        label: str | None = Field(None, description="Validator name in rejections; default "
                                  "'custom:<function>'.")

        @field_validator("callable")
        @classmethod
        def _imports(cls, spec: str) -> str:
            import_callable(spec)
            return spec

    def __init__(self, params: "Custom.Params") -> None:
        self.function = import_callable(params.callable)
        self.label = params.label or f"custom:{params.callable.rpartition(':')[2]}"

    def check(self, text: str, context: Context) -> Rejection | None:
        reason = self.function(text, context)
        if reason is None or reason == "":
            return None
        return Rejection(self.label, str(reason))
