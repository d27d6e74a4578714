"""The mock's Batch API: batch objects, their life (validating -> in_progress -> finalizing ->
completed; or failed, expired, cancelling -> cancelled) and the options that shape it.

Each batch is one asyncio task owned by `Batches` (cancelled and awaited by `close`). It
streams the input file from disk twice, line by line: once to validate it (`batch_input`),
once to answer it, writing the output and error files as requests complete. Answers come from
the online routes' generator (the `compose` callable and `completion_body`), so a batch line
and the same online request get the same choices and usage. Requests are answered in
windows shuffled by the seed: the output file is not in input order, as OpenAI's is not."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable

import orjson

from gristmill.backends.mock.account import Account
from gristmill.backends.mock.answers import Answer, BadRequest
from gristmill.backends.mock.batch_input import (ENDPOINTS, InputCheck, Limits, error,
                                                 parse_line)
from gristmill.backends.mock.files import FileStore, list_page
from gristmill.backends.mock.wire import completion_body, error_object
from gristmill.errors import ConfigError

WINDOW_S = 24 * 3600  # the only completion_window OpenAI accepts: "24h"
SHUFFLE_WINDOW = 64  # requests answered in a seeded random order, this many at a time
YIELD_EVERY = 1000  # lines validated between two turns of the loop
TERMINAL = ("completed", "failed", "expired", "cancelled")
Compose = Callable[[dict[str, Any], bool], Answer]  # the online routes' answer (BadRequest)


# -- options ------------------------------------------------------------------------------
def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--files-dir", default=None, metavar="DIR",
        help="where the Files API keeps file bytes (default: a temp dir removed on exit)")
    add("--batch-ms-per-request", type=float, default=0.0, metavar="MS",
        help="simulated time per batch request (default 0: instant)")
    add("--batch-finalizing-ms", type=float, default=0.0, metavar="MS",
        help="time a batch spends finalizing (default 0)")
    add("--batch-fail-rate", type=float, default=0.0, metavar="F",
        help="fraction of batch requests that fail with a 500 into the error file (seeded)")
    add("--batch-expire-after", type=int, default=None, metavar="N",
        help="a batch expires once N of its requests are done: the rest go to the error "
        "file as batch_expired")
    add("--batch-max-requests", type=int, default=50_000, metavar="N",
        help="requests per batch input file (default 50000)")
    add("--batch-max-bytes", type=int, default=200 * 1024 * 1024, metavar="N",
        help="bytes per batch input file (default 200 MB)")
    add("--batch-enqueued-tokens", type=int, default=None, metavar="N",
        help="per model, tokens enqueued at once by unfinished batches; a batch over it fails "
        "validation with token_limit_exceeded (default: no limit)")


def batch_options_set(args: argparse.Namespace) -> list[str]:
    """The batch options given other values than their defaults, as `--names`."""
    parser = argparse.ArgumentParser(add_help=False)
    add_batch_arguments(parser)
    defaults = vars(parser.parse_args([]))
    return ["--" + k.replace("_", "-") for k, v in defaults.items() if getattr(args, k) != v]


def check_batch_args(args: argparse.Namespace) -> None:
    if min(args.batch_ms_per_request, args.batch_finalizing_ms) < 0:
        raise ConfigError("--batch-ms-per-request and --batch-finalizing-ms must be >= 0")
    if not 0.0 <= args.batch_fail_rate <= 1.0:
        raise ConfigError("--batch-fail-rate is a fraction in [0, 1]")
    if min(args.batch_max_requests, args.batch_max_bytes) < 1:
        raise ConfigError("--batch-max-requests and --batch-max-bytes must be >= 1")
    if min(args.batch_expire_after or 0, args.batch_enqueued_tokens or 0) < 0:
        raise ConfigError("--batch-expire-after and --batch-enqueued-tokens must be >= 0")


# -- the batch object ---------------------------------------------------------------------
@dataclass
class Batch:
    id: str
    number: int  # creation order: seeds this batch's draws
    endpoint: str
    input_file_id: str
    metadata: dict[str, str] | None
    created_at: int
    status: str = "validating"
    errors: dict[str, Any] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    times: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(
        ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
         "cancelling_at", "cancelled_at")))
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    stop_code: str | None = None  # batch_cancelled / batch_expired: the rest is not answered
    model: str | None = None
    enqueued: int = 0  # tokens held against --batch-enqueued-tokens until the batch ends

    def move(self, status: str) -> None:
        self.status = status
        self.times[f"{status}_at"] = int(time.time())

    def as_dict(self) -> dict[str, Any]:
        usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                 "total_tokens": self.input_tokens + self.output_tokens,
                 "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens_details": {"reasoning_tokens": 0}}
        return {"id": self.id, "object": "batch", "endpoint": self.endpoint,
                "errors": self.errors, "input_file_id": self.input_file_id,
                "completion_window": "24h", "status": self.status,
                "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                "created_at": self.created_at, "expires_at": self.created_at + WINDOW_S,
                **self.times, "request_counts": {"total": self.total,
                                                 "completed": self.completed,
                                                 "failed": self.failed},
                "metadata": self.metadata, "model": self.model, "usage": usage}


class BatchError(ValueError):
    """A create or cancel the API refuses: (status, message, code)."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


# -- the batches of a server --------------------------------------------------------------
class Batches:
    def __init__(self, config: argparse.Namespace, store: FileStore, compose: Compose,
                 account: Account) -> None:
        self.config, self.store, self.compose, self.account = config, store, compose, account
        self.limits = Limits(config.batch_max_requests, config.batch_max_bytes,
                             config.output_tokens[1])
        self.batches: dict[str, Batch] = {}  # in creation order
        self.enqueued: dict[str, int] = {}  # model -> tokens of unfinished batches
        self.tasks: set[asyncio.Task[None]] = set()
        self.prefix, self.next_request = os.urandom(6).hex(), 0
        self.reset()

    def reset(self) -> None:
        self.counters = dict.fromkeys(("created", *TERMINAL, "requests_completed",
                                       "requests_failed"), 0)

    def stats(self) -> dict[str, Any]:
        active = sum(b.status not in TERMINAL for b in self.batches.values())
        return {**self.counters, "active": active, "files": len(self.store.files),
                "file_bytes": self.store.total_bytes, "files_dir": str(self.store.dir)}

    # -- API ------------------------------------------------------------------------------
    def create(self, params: Any) -> Batch:
        if not isinstance(params, dict):
            raise BatchError(400, "the body must be a JSON object", "invalid_request")
        endpoint, file_id = params.get("endpoint"), params.get("input_file_id")
        if endpoint not in ENDPOINTS:
            raise BatchError(400, f"endpoint must be one of {', '.join(ENDPOINTS)}",
                             "invalid_value")
        if params.get("completion_window") != "24h":
            raise BatchError(400, "completion_window must be '24h'", "invalid_value")
        info = self.store.get(file_id) if isinstance(file_id, str) else None
        if info is None:
            raise BatchError(404, f"No such File object: {file_id}", "not_found")
        if info.purpose != "batch":
            raise BatchError(400, "the input file's purpose must be 'batch'", "invalid_value")
        metadata = params.get("metadata")
        number = len(self.batches) + 1
        batch = Batch(f"batch_{self.prefix}{number:06x}", number, endpoint, file_id,
                      metadata if isinstance(metadata, dict) else None, int(time.time()))
        self.batches[batch.id] = batch
        self.counters["created"] += 1
        task = asyncio.get_running_loop().create_task(self._run(batch), name=batch.id)
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._ended(batch, t))
        return batch

    def cancel(self, batch: Batch) -> Batch:
        if batch.status in TERMINAL:
            raise BatchError(400, f"Cannot cancel a batch with status {batch.status}.",
                             "invalid_state")
        if batch.stop_code is None:  # the task sees it at its next request
            batch.stop_code = "batch_cancelled"
            batch.move("cancelling")
        return batch

    def page(self, after: str | None, limit: int) -> dict[str, Any]:
        newest_first = [b.as_dict() for b in reversed(self.batches.values())]
        return list_page(newest_first, after, limit)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # -- a batch's life -------------------------------------------------------------------
    async def _run(self, batch: Batch) -> None:
        check = await self._validate(batch)
        if check.errors:
            batch.errors = {"object": "list", "data": check.errors}
            return self._end(batch, "failed")
        if batch.stop_code is None:
            batch.move("in_progress")
        out_id, out = self.store.open_new()
        err_id, err = self.store.open_new()
        with out, err:
            await self._answer_all(batch, out, err)
        if batch.stop_code is None:
            batch.move("finalizing")
            await asyncio.sleep(self.config.batch_finalizing_ms / 1000)
        batch.output_file_id = self._deliver(out_id, batch.completed, f"{batch.id}_output")
        batch.error_file_id = self._deliver(err_id, batch.failed, f"{batch.id}_error")
        self._end(batch, {None: "completed", "batch_expired": "expired",
                          "batch_cancelled": "cancelled"}[batch.stop_code])

    async def _validate(self, batch: Batch) -> InputCheck:
        check = InputCheck(batch.endpoint, self.limits)
        info = self.store.get(batch.input_file_id)
        if info is None:  # deleted between the create and this turn of the loop
            check.errors.append(error("not_found", "The input file was deleted.", None,
                                      "input_file_id"))
            return check
        check.check_size(info.bytes)
        with open(self.store.path(batch.input_file_id), "rb") as src:
            for lineno, raw in enumerate(src, 1):
                if check.over_limit:
                    break
                check.feed(lineno, raw)
                if lineno % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        check.check_total()
        batch.total, batch.model = check.total, check.model
        cap = self.config.batch_enqueued_tokens
        held = self.enqueued.get(check.model or "", 0)
        if not check.errors and cap is not None and held + check.tokens > cap:
            check.errors.append(error(
                "token_limit_exceeded", f"Enqueued token limit reached for {check.model}. "
                f"Limit: {cap} enqueued tokens; this batch holds {check.tokens} and "
                f"{held} are already enqueued. Please try again once some batches have "
                "completed."))
        if not check.errors and check.model is not None:
            batch.enqueued = check.tokens
            self.enqueued[check.model] = held + check.tokens
        return check

    async def _answer_all(self, batch: Batch, out: IO[bytes], err: IO[bytes]) -> None:
        rng = random.Random(self.config.seed * 1_000_003 + batch.number)
        delay = self.config.batch_ms_per_request / 1000
        expire_after = self.config.batch_expire_after
        with open(self.store.path(batch.input_file_id), "rb") as src:
            window: list[bytes] = []
            for raw in src:
                if raw.strip():
                    window.append(raw)
                if len(window) == SHUFFLE_WINDOW:
                    await self._answer_window(batch, window, rng, delay, expire_after, out, err)
                    window = []
            await self._answer_window(batch, window, rng, delay, expire_after, out, err)

    async def _answer_window(self, batch: Batch, window: list[bytes], rng: random.Random,
                             delay: float, expire_after: int | None, out: IO[bytes],
                             err: IO[bytes]) -> None:
        rng.shuffle(window)
        for raw in window:
            request = parse_line(raw)
            if batch.stop_code is None and delay > 0:
                await asyncio.sleep(delay)
            done = batch.completed + batch.failed
            if batch.stop_code is None and expire_after is not None and done >= expire_after:
                batch.stop_code = "batch_expired"
            if batch.stop_code is not None:
                self._write_failed(batch, err, request.custom_id, None,
                                   batch.stop_code, STOP_MESSAGES[batch.stop_code])
                continue
            self._answer_one(batch, request.custom_id, request.body, rng, out, err)
        await asyncio.sleep(0)  # instant batches still let the server answer in between

    def _answer_one(self, batch: Batch, custom_id: str, body: dict[str, Any],
                    rng: random.Random, out: IO[bytes], err: IO[bytes]) -> None:
        chat = ENDPOINTS[batch.endpoint]
        if rng.random() < self.config.batch_fail_rate:  # drawn for every request: seeded
            return self._write_failed(batch, err, custom_id, 500, "internal_error",
                                      "The server had an error (injected).", "server_error")
        refused = self.account.model_refusal(body.get("model"))
        if refused is not None:
            status, message, type_, code = refused
            return self._write_failed(batch, err, custom_id, status, code, message, type_)
        try:
            answer = self.compose(body, chat)
        except BadRequest as exc:
            return self._write_failed(batch, err, custom_id, 400, "invalid_request", str(exc))
        rid = self._request_id()
        response = completion_body(chat, answer, f"cmpl-{rid}", body["model"])
        out.write(orjson.dumps({"id": f"batch_req_{rid}", "custom_id": custom_id,
                                "response": {"status_code": 200, "request_id": f"req_{rid}",
                                             "body": response}, "error": None}) + b"\n")
        batch.completed += 1
        batch.input_tokens += answer.prompt_tokens
        batch.output_tokens += answer.completion_tokens

    def _write_failed(self, batch: Batch, err: IO[bytes], custom_id: str, status: int | None,
                      code: str, message: str, type_: str = "invalid_request_error") -> None:
        """An error file line: with the HTTP error the request got, or without a response
        when it was never answered (expired, cancelled)."""
        rid = self._request_id()
        response = None if status is None else {
            "status_code": status, "request_id": f"req_{rid}",
            "body": {"error": error_object(message, code, type_)}}
        err.write(orjson.dumps({"id": f"batch_req_{rid}", "custom_id": custom_id,
                                "response": response,
                                "error": {"code": code, "message": message}}) + b"\n")
        batch.failed += 1

    def _request_id(self) -> str:
        self.next_request += 1
        return f"{self.prefix}{self.next_request:08x}"

    def _deliver(self, file_id: str, lines: int, name: str) -> str | None:
        """A finished output or error file becomes a file of the API; an empty one is none."""
        if lines == 0:
            self.store.discard(file_id)
            return None
        return self.store.add(file_id, f"{name}.jsonl", "batch_output").id

    def _end(self, batch: Batch, status: str) -> None:
        batch.move(status)
        self.counters[status] += 1
        self.counters["requests_completed"] += batch.completed
        self.counters["requests_failed"] += batch.failed
        if batch.enqueued and batch.model is not None:
            self.enqueued[batch.model] -= batch.enqueued
            batch.enqueued = 0

    def _ended(self, batch: Batch, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        batch.errors = {"object": "list", "data": [error(
            "internal_error", f"the mock failed this batch: {task.exception()!r}")]}
        self._end(batch, "failed")


STOP_MESSAGES = {"batch_expired": "This request could not be executed before the completion "
                 "window expired.",
                 "batch_cancelled": "This request was not executed: the batch was cancelled."}
