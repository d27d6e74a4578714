"""The `assertions` validator: the deterministic assertions of a file written by `gristmill
assertions suggest` (docs/assertions.md), run on each answer as a final check. Its answer-side
must-not-match regexes also run as streaming checks (`stream_checks`), so an answer that
breaks one is stopped as it streams. A rejection names the validator `assertions` and the
assertion's id.

A stage's answer is checked as the record of one instruction (the user message the stage
sent) and its answer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from gristmill.validation.base import Context, Params, Rejection, quote
from gristmill.validation.stream import Forbidden


def _load(path: Path) -> Any:
    from gristmill.assertions.files import read_assertions  # (the assertions import validation)

    return read_assertions(path)


class Assertions:
    name: ClassVar[str] = "assertions"
    kind: ClassVar[str] = "final"

    class Params(Params):
        path: Path = Field(description="An assertion file (RUN/assertions/assertions-v<N>.yaml); "
                           "relative paths are relative to the config's folder.")

        @field_validator("path")
        @classmethod
        def _exists(cls, path: Path, info: ValidationInfo) -> Path:
            base = (info.context or {}).get("base_dir")
            path = path.expanduser()
            path = path if path.is_absolute() or base is None else Path(base) / path
            if not path.is_file():
                raise ValueError(f"assertion file {str(path)!r} does not exist")
            return path

    def __init__(self, params: "Assertions.Params") -> None:
        self.checks = _load(params.path).deterministic  # ConfigError names a bad entry

    def check(self, text: str, context: Context) -> Rejection | None:
        from gristmill.assertions.vocabulary import Texts

        texts = Texts(context.prompt, text)
        for assertion in self.checks:
            if not assertion.check(texts):
                return Rejection(self.name, f"assertion {assertion.id} failed: "
                                 f"{assertion.describe()}: {quote(text)}")
        return None


class AssertionRegex(Forbidden):
    """One must-not-match assertion as a streaming check (`forbidden`'s incremental search)."""

    name: ClassVar[str] = "assertions"

    def __init__(self, params: Forbidden.Params, assertion_id: str) -> None:
        super().__init__(params)
        self.assertion_id = assertion_id

    def rejection(self, match: re.Match[str]) -> Rejection:
        return Rejection(self.name, f"assertion {self.assertion_id} failed: matches "
                         f"{quote(match.group())}")


def stream_checks(path: Path) -> list[AssertionRegex]:
    """The file's answer-side must-not-match regexes as streaming validators."""
    from gristmill.assertions.vocabulary import Regex

    return [AssertionRegex(Forbidden.Params(patterns=[a.pattern], ignore_case=a.ignore_case),
                           a.id)
            for a in _load(path).deterministic
            if isinstance(a, Regex) and not a.must_match and a.target == "answer"]
