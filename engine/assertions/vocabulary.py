"""The fixed vocabulary of assertions: declarative checks of a record that gristmill knows how
to run. An assertion is data (a kind and its parameters), never code: a proposer, human or
model, can only choose among these kinds and set their parameters.

Each deterministic kind has `check(record) -> bool` (True: the record passes) and a stable
`id` (its kind and a digest of its parameters, so the same check always has the same id).
`llm` is a binary question for the judge: it is kept here as data and judged later.

A record is a line of output.jsonl: its `messages` are read with the conversation readers.
The answer is what follows the last user turn (the assistant's reply, its tool calls' arguments
and the tools' results); the instruction is everything before it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from gristmill.dataset.conversation import messages_of, text_of, tool_calls_of

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
ITEM_LINE = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S", re.MULTILINE)
JSON_TYPES = ("string", "number", "integer", "boolean", "array", "object", "null", "any")


@dataclass(frozen=True)
class Texts:
    instruction: str
    answer: str

    @cached_property
    def answer_words(self) -> list[str]:
        return words(self.answer)


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def record_texts(record: dict[str, Any]) -> Texts:
    """(instruction, answer) of a record, split at its last user turn."""
    messages = messages_of(record)
    cut = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1) + 1
    if cut == len(messages):  # no answer after the last user turn: the last message answers
        cut = max(0, len(messages) - 1)

    def joined(part: list[dict[str, Any]]) -> str:
        texts = []
        for m in part:
            texts.append(text_of(m.get("content")))
            texts.extend(call.arguments for call in tool_calls_of(m))
        return "\n\n".join(t for t in texts if t)
    return Texts(joined(messages[:cut]), joined(messages[cut:]))


def texts_of(record: dict[str, Any] | Texts) -> Texts:
    return record if isinstance(record, Texts) else record_texts(record)


class Assertion(BaseModel):
    """Base of every kind: unknown keys are errors; parameters are checked when loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    deterministic: ClassVar[bool] = True

    @property
    def id(self) -> str:
        params = orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS)
        return f"{self.kind}-{hashlib.blake2b(params, digest_size=4).hexdigest()}"

    def check(self, record: dict[str, Any] | Texts) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _bounded(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _bounds_text(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g} {unit}"
    return f"at least {low:g} {unit}" if low is not None else f"at most {high:g} {unit}"


class _Bounds(Assertion):
    min: float | None = Field(None, ge=0, description="Least value (inclusive).")
    max: float | None = Field(None, ge=0, description="Most value (inclusive).")

    @model_validator(mode="after")
    def _some(self) -> "_Bounds":
        if self.min is None and self.max is None:
            raise ValueError(f"{self.kind}: give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.kind}: min ({self.min:g}) is above max ({self.max:g})")
        return self


class Regex(Assertion):
    """The answer (or the instruction) must match, or must not match, a regex."""

    kind: Literal["regex"] = "regex"
    pattern: str = Field(min_length=1, description="A Python regex.")
    must_match: bool = Field(False, description="True: the text must match; False: must not.")
    target: Literal["answer", "instruction"] = Field("answer", description="The text searched.")
    ignore_case: bool = Field(True, description="Case-insensitive matching.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
        return pattern

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)

    def check(self, record: dict[str, Any] | Texts) -> bool:
        texts = texts_of(record)
        found = self.regex.search(texts.answer if self.target == "answer" else texts.instruction)
        return (found is not None) == self.must_match

    def describe(self) -> str:
        return f"the {self.target} {'matches' if self.must_match else 'never matches'} /{self.pattern}/"


class Length(_Bounds):
    """Bounds on the answer's length in characters or words."""

    kind: Literal["length"] = "length"
    unit: Literal["chars", "words"] = Field("chars", description="What is counted.")

    def measure(self, texts: Texts) -> int:
        return len(texts.answer.strip()) if self.unit == "chars" else len(texts.answer_words)

    def check(self, record: dict[str, Any] | Texts) -> bool:
        return _bounded(self.measure(texts_of(record)), self.min, self.max)

    def describe(self) -> str:
        return f"the answer has {_bounds_text(self.min, self.max, self.unit)}"


class JsonPath(Assertion):
    """The answer is JSON and a dotted path (`steps.0.name`) is present with a type, or is
    absent (`present: false`; an answer that is not JSON has no path)."""

    kind: Literal["json_path"] = "json_path"
    path: str = Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$", description="Keys and list indices, "
                      "dot-separated, e.g. 'steps.0.name'.")
    type: Literal[JSON_TYPES] = Field("any", description="The JSON type the value has.")
    present: bool = Field(True, description="True: present with the type; False: absent.")

    def check(self, record: dict[str, Any] | Texts) -> bool:
        return self.present == (json_type(lookup(parse_json(texts_of(record).answer), self.path))
                                in _accepted(self.type))

    def describe(self) -> str:
        shape = f"{self.path!r} ({self.type})" if self.type != "any" else repr(self.path)
        return f"the answer is JSON with {shape}" if self.present else \
            f"the answer has no {shape}"


MISSING = object()


def parse_json(text: str) -> Any:
    text = text.strip()
    if text.startswith("```"):  # a fenced block
        text = text.strip("`").removeprefix("json").strip()
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return MISSING


def lookup(value: Any, path: str) -> Any:
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


def json_type(value: Any) -> str | None:
    if value is MISSING:
        return None
    for kind, types in (("boolean", bool), ("integer", int), ("number", float),
                        ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, types):
            return kind
    return "null"


def _accepted(kind: str) -> set[str | None]:
    if kind == "any":
        return set(JSON_TYPES) - {"any"}
    return {"number", "integer"} if kind == "number" else {kind}


class Language(Assertion):
    """The answer is in a language, by the `language` validator's test: the share of letters
    in its script and, for English, of English stop words."""

    kind: Literal["language"] = "language"
    language: str = Field("en", pattern=r"^[a-z]{2}$", description="ISO 639-1 code.")
    min_script_share: float = Field(0.6, ge=0, le=1, description="Least share of letters in "
                                    "the language's script.")
    min_stopword_rate: float = Field(0.15, ge=0, le=1, description="English only: least share "
                                     "of English stop words.")
    min_words: int = Field(20, ge=1, description="Fewer words skip the stop-word test.")

    def check(self, record: dict[str, Any] | Texts) -> bool:
        from gristmill.validation.language import SCRIPTS, script_share, stopword_rate

        answer = texts_of(record).answer
        scripts = SCRIPTS.get(self.language)
        if scripts is not None:
            share, letters = script_share(answer, scripts)
            if letters and share < self.min_script_share:
                return False
        if self.language == "en" and parse_json(answer) is MISSING:
            rate, count = stopword_rate(answer)
            return count < self.min_words or rate >= self.min_stopword_rate
        return True

    def describe(self) -> str:
        return f"the answer is in {self.language!r} (stop words >= {self.min_stopword_rate:g})" \
            if self.language == "en" else f"the answer is in {self.language!r}"


class Overlap(_Bounds):
    """Bounds on the share of the answer's distinct words that occur in the instruction (low:
    off topic; high: the answer copies its input)."""

    kind: Literal["overlap"] = "overlap"
    max: float | None = Field(None, ge=0, le=1, description="Most share (inclusive).")

    @staticmethod
    def ratio(texts: Texts) -> float:
        answer = set(texts.answer_words)
        return len(answer & set(words(texts.instruction))) / len(answer) if answer else 0.0

    def check(self, record: dict[str, Any] | Texts) -> bool:
        return _bounded(self.ratio(texts_of(record)), self.min, self.max)

    def describe(self) -> str:
        bounds = _bounds_text(self.min, self.max, "").strip()
        return f"the share of the answer's words found in the instruction is {bounds}"


class Terms(Assertion):
    """Whole words or phrases (case-insensitive) that must all occur, or none of which may."""

    kind: Literal["terms"] = "terms"
    terms: list[str] = Field(min_length=1, description="Words or phrases.")
    mode: Literal["required", "forbidden"] = Field("forbidden", description="required: every "
                                                   "term occurs; forbidden: none does.")

    @cached_property
    def regexes(self) -> list[re.Pattern[str]]:
        return [re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, t.split())) + r"(?!\w)",
                           re.IGNORECASE) for t in self.terms]

    def check(self, record: dict[str, Any] | Texts) -> bool:
        answer = texts_of(record).answer
        found = [r.search(answer) is not None for r in self.regexes]
        return all(found) if self.mode == "required" else not any(found)

    def describe(self) -> str:
        shown = ", ".join(repr(t) for t in self.terms)
        return f"the answer has {'all of' if self.mode == 'required' else 'none of'} {shown}"


class Items(_Bounds):
    """Bounds on the answer's item count: a JSON list's length, else its bullet or numbered
    lines."""

    kind: Literal["items"] = "items"

    @staticmethod
    def count(texts: Texts) -> int:
        value = parse_json(texts.answer)
        return len(value) if isinstance(value, list) else len(ITEM_LINE.findall(texts.answer))

    def check(self, record: dict[str, Any] | Texts) -> bool:
        return _bounded(self.count(texts_of(record)), self.min, self.max)

    def describe(self) -> str:
        return f"the answer has {_bounds_text(self.min, self.max, 'items')}"


class LlmCriterion(Assertion):
    """A binary question the LLM judge answers (yes = pass): judged with the judge's criteria."""

    kind: Literal["llm"] = "llm"
    deterministic: ClassVar[bool] = False
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="The criterion's name.")
    question: str = Field(min_length=1, description="The yes/no question (yes = pass).")

    def check(self, record: dict[str, Any] | Texts) -> bool:
        raise TypeError(f"{self.id} is judged by the LLM judge, not checked here")

    def describe(self) -> str:
        return f"judge: {self.question}"


AnyAssertion = Annotated[Union[Regex, Length, JsonPath, Language, Overlap, Terms, Items,
                               LlmCriterion], Field(discriminator="kind")]
KINDS = ("regex", "length", "json_path", "language", "overlap", "terms", "items", "llm")
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyAssertion)


def parse_assertion(data: dict[str, Any]) -> Assertion:
    """An assertion from its mapping (pydantic's ValidationError when it is malformed)."""
    return _ADAPTER.validate_python(data)


def as_data(assertion: Assertion) -> dict[str, Any]:
    """The mapping `parse_assertion` reads back: the kind first, defaults included."""
    data = assertion.model_dump()
    return {"kind": data.pop("kind"), **data}
