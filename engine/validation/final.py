"""Final validators: checks of the whole answer, once it is complete.

schema              structured answers parse as JSON and validate against the schema
length              character and word bounds
placeholders        leftover template artefacts: [Insert ...], {{ var }}, lorem ipsum...
restates_question   the answer repeats the question instead of answering it
truncated           empty, cut at max_tokens, or an instruction/answer pair with an empty side
custom              a user function `(text, context) -> reason | None`
(decontamination lives in `decontam.py`.)
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, ClassVar, Iterator

import orjson
from pydantic import Field, field_validator, model_validator

from gristmill.validation import jsonschema_lite
from gristmill.validation.base import CODE_SPANS, Context, Params, Rejection, check_regexes, quote


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


# -- placeholders -------------------------------------------------------------------------
PLACEHOLDER_PATTERNS = (
    r"\[(?:insert|enter|add|your|placeholder|name of|fill in)\b[^\]\n]{0,80}\]",
    r"\{\{[^{}\n]{0,80}\}\}",  # an unrendered {{ variable }}
    r"\{%[^\n]{0,80}?%\}",  # an unrendered {% tag %}
    r"<\s*placeholder\b[^>\n]{0,80}>",
    r"\bas an ai language model\b",
    r"\blorem ipsum\b",
    r"(?-i:\bTODO:)",
)


# A pattern that is a word-bounded literal ("\bas an ai\b"; case-sensitive in (?-i:...)):
# it cannot match a text that lacks the literal, which `in` tells far faster than the regex.
_LITERAL = re.compile(r"(?P<open>\(\?-i:)?\\b(?P<lit>[A-Za-z0-9 :]+)(?:\\b)?(?(open)\))")


class LeftmostSearch:
    """`re.compile("|".join(patterns), re.IGNORECASE).search` with the same match, faster:
    each pattern is searched alone (so one that starts with a literal is scanned for by
    the regex engine's prefix search, which an alternation defeats), a word-bounded literal
    pattern is skipped when its literal is absent (in ASCII text, where ignoring case means
    ASCII case), and the leftmost match wins, the earlier pattern on a tie, as in the
    alternation."""

    def __init__(self, patterns: tuple[str, ...] | list[str]) -> None:
        self.parts: list[tuple[int, re.Pattern[str], str | None, bool]] = []
        for index, pattern in enumerate(patterns):
            literal = _LITERAL.fullmatch(pattern)
            cased = bool(literal and literal["open"])
            text = literal["lit"] if cased else literal["lit"].lower() if literal else None
            self.parts.append((index, re.compile(pattern, re.IGNORECASE), text, cased))

    def search(self, text: str) -> re.Match[str] | None:
        ascii_lower = text.lower() if text.isascii() else None
        best: tuple[int, int, re.Match[str]] | None = None
        for index, regex, literal, cased in self.parts:
            if literal is not None:
                if cased and literal not in text:
                    continue
                if not cased and ascii_lower is not None and literal not in ascii_lower:
                    continue
            match = regex.search(text)
            if match is not None and (best is None or (match.start(), index) < best[:2]):
                best = (match.start(), index, match)
        return best[2] if best is not None else None


class Placeholders:
    """Leftover placeholders and template artefacts. Code spans (``` blocks, `inline`) are
    not searched, so an answer about Jinja may show {{ var }}; in structured answers only
    the string values are searched (JSON braces are not template braces)."""

    name: ClassVar[str] = "placeholders"
    kind: ClassVar[str] = "final"

    class Params(Params):
        patterns: list[str] = Field(default_factory=lambda: list(PLACEHOLDER_PATTERNS),
                                    description="Regexes (case-insensitive) replacing the "
                                    "built-in ones.")
        extra_patterns: list[str] = Field(default_factory=list, description="Regexes added.")

        @field_validator("patterns", "extra_patterns")
        @classmethod
        def _compiles(cls, patterns: list[str]) -> list[str]:
            return check_regexes(patterns)

    def __init__(self, params: "Placeholders.Params") -> None:
        patterns = (*params.patterns, *params.extra_patterns)
        self.regex = LeftmostSearch(patterns) if patterns else None

    def check(self, text: str, context: Context) -> Rejection | None:
        if self.regex is None:
            return None
        if context.structured:
            value, problem = parse_json(text)
            texts = list(strings_in(value)) if problem is None else []
        else:
            texts = [CODE_SPANS.sub(" ", text)]
        for chunk in texts:
            if (match := self.regex.search(chunk)) is not None:
                return Rejection("placeholders", f"leftover placeholder {quote(match.group())} "
                                 f"in {quote(chunk[max(0, match.start() - 30):match.end() + 30])}")
        return None


# -- restates_question --------------------------------------------------------------------
_WORDS = re.compile(r"\w+")


# ASCII bytes outside \w, mapped to spaces: then split() finds the \w+ runs.
_ASCII_NON_WORD = bytes(i if i >= 128 or _WORDS.match(chr(i)) else 32 for i in range(256))


def _words(text: str) -> list[str]:
    if text.isascii():  # the same words, by a bytes table (C speed) instead of the regex
        return text.lower().encode().translate(_ASCII_NON_WORD).decode().split()
    return _WORDS.findall(text.casefold())


class RestatesQuestion:
    """The answer restates the question (`context.prompt`, which the stage sets to what its
    output answers; empty for stages whose output is not an answer): the same words, or `max_overlap` of the answer's distinct words taken from the
    question (answers of `min_words` words or more), or an opening that copies `copy_words`
    consecutive words of the question. Meant for answer stages: give `prompt` = the
    instruction, not a prompt that embeds a source document."""

    name: ClassVar[str] = "restates_question"
    kind: ClassVar[str] = "final"

    class Params(Params):
        max_overlap: float = Field(0.9, gt=0, le=1, description="Share of the answer's "
                                   "distinct words found in the question that rejects.")
        min_words: int = Field(5, ge=1, description="Shorter answers are only checked for "
                               "being the question itself.")
        copy_words: int = Field(20, ge=3, description="Consecutive question words at the "
                                "start of the answer that reject.")

    def __init__(self, params: "RestatesQuestion.Params") -> None:
        self.p = params

    def check(self, text: str, context: Context) -> Rejection | None:
        question = _words(context.prompt)
        if not question or self._cannot_restate(text, question):
            return None
        answer = _words(text)
        if answer and (reason := self._restates(answer, question)) is not None:
            return Rejection("restates_question", f"{reason}: {quote(text)}")
        return None

    def _cannot_restate(self, text: str, question: list[str]) -> bool:
        """True when the opening of the answer already rules every test out, so the whole
        answer need not be split into words: it has more words than the question, more
        distinct words than the overlap allows (the question's distinct words over
        `max_overlap`), and no copied opening."""
        distinct_question, n = len(set(question)), self.p.copy_words
        head = text[: 16 * (distinct_question + n)]
        words = _words(head)
        if len(head) < len(text):
            words = words[:-1]  # the last word may be cut
        if len(words) <= len(question) or len(set(words)) * self.p.max_overlap \
                <= distinct_question + 1:  # a margin of one word against rounding
            return False
        return len(question) < n or (len(words) >= n and not self._copies(words[:n], question))

    def _copies(self, opening: list[str], question: list[str]) -> bool:
        n = self.p.copy_words
        return len(opening) >= n and any(question[i:i + n] == opening
                                         for i in range(len(question) - n + 1))

    def _restates(self, answer: list[str], question: list[str]) -> str | None:
        if not question:
            return None
        if answer == question:
            return "the answer is the question"
        distinct = set(answer)
        if len(answer) >= self.p.min_words:
            share = len(distinct & set(question)) / len(distinct)
            if share >= self.p.max_overlap:
                return (f"the answer restates the question ({share:.0%} of its words are "
                        "the question's)")
        n = self.p.copy_words
        if len(question) >= n and self._copies(answer[:n], question):
            return f"the answer opens by copying {n} words of the question"
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
