"""The validator interface: what a check sees (`Context`), what it says (`Rejection`), and the
two kinds of validators.

A `StreamValidator` is configured once and makes a fresh `StreamCheck` per request; the check
is fed the answer as it streams and may reject it early, so a bad answer stops costing tokens.
A `FinalValidator` looks at the whole answer once. Both are plain synchronous code without
I/O (anything loaded from disk is loaded when the validator is built), so they are cheap to
call on the event loop and easy to unit-test.

Streaming checks are incremental: each `feed` costs time proportional to the new text plus a
bounded tail, and the verdict does not depend on how the text was chunked (the tests feed
random chunkings and compare with feeding the text whole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Protocol, Sequence

from pydantic import BaseModel, ConfigDict

from gristmill.errors import InvalidOutput

QUOTE_CHARS = 60  # quoted snippets in reasons are trimmed to this
CODE_SPANS = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)  # fenced blocks, inline code


@dataclass(frozen=True, slots=True)
class Rejection:
    validator: str  # e.g. "refusal"
    reason: str  # human-readable and specific: it quotes the offending bit

    def error(self, text: str = "") -> InvalidOutput:
        """The rejection as the engine's exception (the answer's text attached)."""
        return InvalidOutput(self.reason, text=text, validator=self.validator)


@dataclass(slots=True)
class Context:
    """What a validator knows about the answer besides its text."""

    stage: str = ""
    structured: bool = False  # JSON is expected (a response_format was sent)
    schema: dict[str, Any] | None = None  # the JSON schema, when there is one
    prompt: str = ""  # the user prompt / instruction the answer answers
    finish_reason: str | None = None  # known at the end only ("stop", "length", ...)
    record: dict[str, Any] = field(default_factory=dict)  # the item's values: seed, instruction...
    language: str = "en"  # expected language (ISO 639-1)


class StreamCheck(Protocol):
    """One per request: it keeps the incremental state."""

    def feed(self, new_text: str) -> Rejection | None: ...

    def finish(self) -> Rejection | None: ...


class StreamValidator(Protocol):
    name: str

    def start(self, context: Context) -> StreamCheck: ...


class FinalValidator(Protocol):
    name: str

    def check(self, text: str, context: Context) -> Rejection | None: ...


class PassCheck:
    """A check that never rejects (a validator that does not apply to this request)."""

    __slots__ = ()

    def feed(self, new_text: str) -> Rejection | None:
        return None

    def finish(self) -> Rejection | None:
        return None


PASS = PassCheck()


class CompositeStreamCheck:
    """Runs several checks on the same stream; the first rejection is the verdict and is
    returned again by every later call (the checks are not fed after it). A check that has
    `settled` (it has passed and no more text can change that) is no longer called: most
    of an answer then costs only the checks that look at all of it."""

    __slots__ = ("checks", "rejection", "chars", "settling")

    def __init__(self, checks: Iterable[StreamCheck]) -> None:
        self.checks = [c for c in checks if c is not PASS]
        self.rejection: Rejection | None = None
        self.chars = 0  # text fed so far: where a stream was cut, for the stats
        self.settling = any(getattr(c, "settles", False) for c in self.checks)

    def feed(self, new_text: str) -> Rejection | None:
        if self.rejection is None and new_text:
            self.chars += len(new_text)
            for check in self.checks:
                if (rejection := check.feed(new_text)) is not None:
                    self.rejection = rejection
                    break
            else:
                if self.settling:
                    self._drop_settled()
        return self.rejection

    def _drop_settled(self) -> None:
        self.checks = [c for c in self.checks if not getattr(c, "settled", False)]
        self.settling = any(getattr(c, "settles", False) for c in self.checks)

    def finish(self) -> Rejection | None:
        if self.rejection is None:
            for check in self.checks:
                if (rejection := check.finish()) is not None:
                    self.rejection = rejection
                    break
        return self.rejection


def start_checks(validators: Sequence[StreamValidator], context: Context) -> CompositeStreamCheck:
    """The per-request check of a stage's streaming validators."""
    return CompositeStreamCheck(v.start(context) for v in validators)


def run_stream_on_text(validators: Sequence[StreamValidator], text: str,
                       context: Context) -> Rejection | None:
    """Streaming validators applied to a finished (non-streamed) answer."""
    check = start_checks(validators, context)
    return check.feed(text) or check.finish()


def run_final(validators: Sequence[FinalValidator], text: str,
              context: Context) -> Rejection | None:
    """The first rejection of the final validators, in order, or None."""
    for validator in validators:
        if (rejection := validator.check(text, context)) is not None:
            return rejection
    return None


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """A snippet for a reason: whitespace collapsed, trimmed with an ellipsis, repr-quoted."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return repr(text)


class Params(BaseModel):
    """Base of a validator's parameters: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Check:
    """Base of the built-in stream checks: once a check has rejected, the verdict stands and
    later calls return it again without looking at more text."""

    __slots__ = ("verdict", "settled")
    settles: ClassVar[bool] = False  # a check that decides on the opening sets `settled`

    def __init__(self) -> None:
        self.verdict: Rejection | None = None
        self.settled = False  # passed for good: later text (and the end) cannot reject

    def feed(self, new_text: str) -> Rejection | None:
        if self.verdict is None and new_text:
            self.verdict = self._feed(new_text)
        return self.verdict

    def finish(self) -> Rejection | None:
        if self.verdict is None:
            self.verdict = self._finish()
        return self.verdict

    def _feed(self, new_text: str) -> Rejection | None:
        raise NotImplementedError

    def _finish(self) -> Rejection | None:
        return None


LEADING_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


def alternation(patterns: Iterable[str]) -> str:
    """One regex matching any of `patterns`. Each is its own group; a pattern's leading
    inline flags (`(?i)...`) become the group's own (`(?i:...)`): a global flag is only
    allowed at the very start of a whole regex, which a joined pattern is not."""
    groups = []
    for pattern in patterns:
        flags = LEADING_FLAGS.match(pattern)
        groups.append(f"(?{flags.group(1)}:{pattern[flags.end():]})" if flags
                      else f"(?:{pattern})")
    return "|".join(groups)


def check_regexes(patterns: list[str]) -> list[str]:
    """A params validator: every pattern compiles, alone and joined (ValueError naming the
    bad one)."""
    for pattern in patterns:
        try:
            re.compile(alternation([pattern]))
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
    return patterns
