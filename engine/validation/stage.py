"""Validators at work in a stage: a check per request that watches the stream and can abort
it, the final checks, and regeneration of rejected answers.

Aborting is raising from the stream's watch: the client's `aclosing` closes the HTTP stream
(so the server stops generating: vLLM aborts a request whose client went away) and its permit
goes back to the scheduler before the next attempt is even queued."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gristmill.protocol import Completion, Request

from gristmill.config.pipeline import ValidatorsConfig
from gristmill.errors import InvalidOutput
from gristmill.scheduling.tokens import estimate_tokens
from gristmill.validation.assertions import stream_checks
from gristmill.validation import (DEFAULT_FINAL, DEFAULT_STREAM, CompositeStreamCheck, Context,
                                  Rejection, build_final, build_stream, merge_specs, run_final,
                                  run_stream_on_text, start_checks)


@dataclass
class ValidationStats:
    rejected: Counter[str] = field(default_factory=Counter)  # validator -> answers rejected
    aborted: int = 0  # streams stopped early
    tokens_received_before_abort: int = 0
    tokens_saved: int = 0  # estimate: max_tokens minus what had arrived, per aborted stream

    def as_dict(self) -> dict[str, Any]:
        return {"rejected_by_validator": dict(self.rejected.most_common()),
                "streams_aborted": self.aborted, "tokens_saved_estimate": self.tokens_saved}


class StageValidation:
    def __init__(self, config: ValidatorsConfig, stage: str, stats: ValidationStats,
                 base_dir: Path | None = None, question: str | None = "prompt") -> None:
        self.stage = stage
        # what the answer must not restate: "prompt" (the user message), a value of the item
        # (e.g. "instruction"), or None for stages whose output is not an answer
        self.question = question
        self.stats = stats
        self.max_regenerations = config.max_regenerations
        self.abort_early = config.abort_early
        self.check_every_chars = config.check_every_chars
        stream = merge_specs(DEFAULT_STREAM if config.defaults else [], config.stream)
        final = merge_specs(DEFAULT_FINAL if config.defaults else [], config.final)
        if config.assertions is not None:
            final.append({"name": "assertions", "path": str(config.assertions)})
        self.stream = build_stream(stream, base_dir=base_dir)
        self.final = build_final(final, base_dir=base_dir)
        if config.assertions is not None:
            self.stream += stream_checks(config.assertions)

    def context(self, values: dict[str, Any], request: Request) -> Context:
        fmt = request.response_format
        schema = (fmt or {}).get("json_schema", {}).get("schema") if fmt else None
        if self.question == "prompt":
            messages = request.messages or [{"role": "user", "content": request.prompt or ""}]
            prompt = next((m.get("content") for m in reversed(messages)
                           if m.get("role") == "user"), "")
        else:
            prompt = values.get(self.question, "") if self.question else ""
        return Context(stage=self.stage, structured=fmt is not None, schema=schema,
                       prompt=prompt if isinstance(prompt, str) else "", record=values)

    def watch(self, context: Context, request: Request) -> "StreamWatch":
        """What watches one streamed attempt (the client feeds it coalesced text)."""
        return StreamWatch(lambda: start_checks(self.stream, context), self.check_every_chars,
                           lambda chars: self._aborted(request, chars))

    def _aborted(self, request: Request, chars: int) -> None:
        self.stats.aborted += 1
        got = estimate_tokens("x" * chars)
        self.stats.tokens_received_before_abort += got
        self.stats.tokens_saved += max(0, int(request.params.get("max_tokens") or 0) - got)

    def verdict(self, completion: Completion, context: Context,
                watch: "StreamWatch | None") -> Rejection | None:
        """The streaming checks' verdict (from `watch` if it saw the stream, else on the whole
        text), then the final checks'."""
        text = completion.text
        rejection = (watch.finish(text) if watch is not None
                     else run_stream_on_text(self.stream, text, context))
        if rejection is None:
            final_context = dataclasses.replace(context, finish_reason=completion.finish_reason)
            rejection = run_final(self.final, text, final_context)
        return rejection

    def count(self, validator: str | None) -> None:
        self.stats.rejected[validator or "unknown"] += 1


class StreamWatch:
    """The streaming checks of one attempt, as the client drives them: `start` as each stream
    begins (a retried stream starts over), `feed` every `every` characters (the client
    coalesces network reads: the same verdict, since the checks are incremental, for a
    fraction of the calls; an abort comes at most `every` characters later), raising to abort
    the stream; `finish` with the whole text once it has ended."""

    __slots__ = ("make_check", "check", "every", "chunks", "on_abort")

    def __init__(self, make_check: Callable[[], CompositeStreamCheck], every: int,
                 on_abort: Callable[[int], None]) -> None:
        self.make_check = make_check
        self.every = every
        self.on_abort = on_abort  # the client calls `start` before the first feed

    def start(self) -> None:
        self.check = self.make_check()
        self.chunks: list[str] = []  # the text fed, for the reject record of an abort

    def feed(self, text: str) -> None:
        self.chunks.append(text)
        if (rejection := self.check.feed(text)) is not None:
            whole = "".join(self.chunks)
            self.on_abort(len(whole))
            raise rejection.error(whole)

    def finish(self, text: str) -> Rejection | None:
        """The verdict on the whole `text`, of which the checks have seen the first
        `check.chars` characters."""
        rest = text[self.check.chars:]
        return (self.check.feed(rest) if rest else None) or self.check.finish()


def rejection_of(error: InvalidOutput) -> Rejection:
    return Rejection(error.validator or "parse", error.reason)
