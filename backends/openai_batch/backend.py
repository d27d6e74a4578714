"""`mode: batch`: requests gathered into files for the provider's Batch API, at its discount.

A request joins the open file of its model (`open_files`: its line written to disk at once)
and raises `Parked`: no
worker waits for it, the pipeline sets its item aside. A file is sealed when it is full
(requests or bytes), `seal_after_s` after its first request, once nothing has joined it for
`idle_seal_s`, or at once when the pipeline has nothing else to do (`flush`). At most
`max_pending` requests wait for answers at once; one more waits for room. Each sealed file is
driven to its end by one task: intent in the ledger, upload, create, status polls with
backoff, both the output and the error file read. A line that failed, expired or is missing
goes into a later file, put there by the backend itself a bounded number of times
(`retry.max_attempts` files in all), then it fails with the provider's reason. Every other
result is kept until its request is asked again, and the pipeline is told (`answered`) which
keys have one; a file is marked done once each of its results was taken and the run's store
has committed it. Refusals that are fatal online (a bad key, an unknown model) are fatal here
too. Each line's custom_id is the request's durable key (`request_key`).

After a crash the ledger's open files are resumed before any request is placed: their keys
wait for those files instead of joining new ones, so no key is in two open batches."""

from __future__ import annotations

import asyncio
import copy
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

import orjson

from gristmill.capabilities import Answered, Capabilities
from gristmill.config.pipeline import BackendConfig
from gristmill.errors import BackendError, FatalUpstream, Parked, RetryableError
from gristmill.protocol import Completion, Delta, Request, SentCallback, request_key

from gristmill.backends.openai_batch.api import BatchApi, lines
from gristmill.backends.openai_batch.crash import crash_point
from gristmill.backends.openai_batch.hosted import HostedBatches
from gristmill.backends.openai_batch.ledger import FileEntry, Ledger
from gristmill.backends.openai_batch.open_files import OpenFile, OpenFiles, line_of
from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.backends.openai_http.refusals import Where, refusal
from gristmill.backends.openai_http.wire import first_answer, model_of, usage_of

log = logging.getLogger("gristmill.batch")
Result = Completion | BaseException


class Runner(Protocol):
    """Runs a sealed file: the paths of its result files (OpenAI's output and error line
    formats), or one error for every line when the file failed as a whole."""

    async def run(self, entry: FileEntry, path: Path,
                  resumed: bool) -> list[Path] | BaseException: ...

    async def aclose(self) -> None: ...


class LineFailed(RetryableError):
    """A line of a batch failed, expired, was cancelled or is missing from its files."""


class GaveUp(BackendError):
    """A line failed in every file it was put in: its item is a reject with the reason."""


class OpenAIBatchBackend:
    def __init__(self, name: str, config: BackendConfig, work_dir: Path,
                 runner: "Callable[[OpenAIBatchBackend, Ledger], Runner] | None" = None) -> None:
        self.name, self.config = name, config
        self.dir = work_dir
        self.url = "/v1/chat/completions" if config.api == "chat" else "/v1/completions"
        self._make_runner = runner or OpenAIBatchBackend.hosted
        # the same key, headers and URL as online: its preflight, its headers, and the key
        # variable messages name
        self._online = OpenAIHTTPBackend(name, config)
        self.where = Where(name, config.model, self._online.key_variable)
        self.capabilities = Capabilities(
            preflight=self._online.preflight if config.preflight else None,
            background=self.serve, drain=self.drain, set_commit_barrier=self._set_barrier,
            batches=self)
        self.ledger: Ledger | None = None
        self.runner: Runner | None = None  # made when the run starts: it needs the ledger
        self._token = ""  # this run's mark in file names and batch metadata
        self._open = OpenFiles(config.batch_files, work_dir, name, self._seal)
        self._waiting: set[bytes] = set()  # keys in open or submitted files, no result yet
        self._room = asyncio.Event()  # set while fewer than max_pending are waiting
        self._room.set()
        self._results: dict[bytes, Result] = {}  # arrived, not yet taken (errors: kept)
        self._resubmitted: dict[bytes, int] = {}  # key -> later files it was put in
        self._answered: Answered = lambda keys: None  # told the keys whose results arrived
        self._owner: dict[bytes, FileEntry] = {}  # keys in a file not yet done
        self._untaken: dict[int, int] = {}  # file seq -> answers not yet taken by a waiter
        self._all_taken: dict[int, asyncio.Event] = {}
        self._group: asyncio.TaskGroup | None = None
        self._drives: dict[int, asyncio.Task[None]] = {}
        self._ready = asyncio.Event()
        self._barrier: Callable[[], Awaitable[None]] | None = None
        self.files_done = 0

    def _set_barrier(self, barrier: Callable[[], Awaitable[None]]) -> None:
        self._barrier = barrier

    def tell(self, answered: Answered) -> None:
        """Whom to tell the keys whose results have arrived (the pipeline)."""
        self._answered = answered

    # -- the background work ----------------------------------------------------------------
    async def serve(self) -> None:
        """Resume the ledger's open files, then drive each sealed file; until cancelled."""
        self.ledger = Ledger(self.dir / "ledger.sqlite")
        self._token = self.ledger.token()
        self._open.start(self._token, self.ledger.next_seq())
        self.runner = self._make_runner(self, self.ledger)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                resumed = self.ledger.open_files()
                self._open.remove_strays({entry.name for entry, _ in resumed})
                for entry, keys in resumed:
                    self._claim(entry, keys)
                    self._waiting.update(keys)
                for entry, _ in resumed:  # a key retried into a later file belongs to it
                    self._recount(entry)
                    self._start(entry, None)
                self._ready.set()
                try:
                    await asyncio.get_running_loop().create_future()  # until cancelled
                finally:  # the run has ended: nothing is sealed from now on
                    self._open.close()
        finally:
            self._group = None

    def hosted(self, ledger: Ledger) -> Runner:
        """The provider's Files and Batch API at the backend's base URL."""
        api = BatchApi(self.config.base_urls[0], self._online.headers, self.where,
                       self.config.timeouts.total)
        return HostedBatches(api, ledger, self.config, self.url, self._token)

    def _claim(self, entry: FileEntry, keys: list[bytes]) -> None:
        for key in keys:
            self._owner[key] = entry
        self._untaken[entry.seq] = len(keys)
        self._all_taken[entry.seq] = asyncio.Event()

    def _recount(self, entry: FileEntry) -> None:
        self._untaken[entry.seq] = len(self._keys_of(entry))
        if self._untaken[entry.seq] == 0:
            self._all_taken[entry.seq].set()

    # -- requests ---------------------------------------------------------------------------
    async def complete(self, request: Request, sent: SentCallback | None = None) -> Completion:
        """The answer if it has arrived; else the request joins a file (unless it is in one
        already) and `Parked` is raised: its item is asked again once the answer is there."""
        key = request_key(self.name, request)
        await self._ready.wait()  # resumed files claim their keys first
        if key in self._results:
            return self._take(key)
        if key not in self._waiting:
            while len(self._waiting) >= self.config.batch_files.max_pending:
                self.flush()  # what is gathered cannot grow: let it go
                self._room.clear()
                await self._room.wait()
            if key in self._results:  # answered while this one waited for room
                return self._take(key)
            if key not in self._waiting:
                self._join(key, line_of(key, self.url, request), request.model)
        raise Parked(key)

    async def stream(self, request: Request,
                     sent: SentCallback | None = None) -> AsyncIterator[Delta]:
        """A batch answers whole: one delta."""
        completion = await self.complete(request, sent)
        yield Delta(completion.text, completion.finish_reason, completion.usage,
                    completion.tool_calls)

    def _take(self, key: bytes) -> Completion:
        """A result handed to its request: an answer leaves (the client caches it); an error
        stays, so that an identical request fails alike instead of joining a file again."""
        result = self._results[key]
        self._release(key)
        if isinstance(result, BaseException):
            raise copy.copy(result)  # each caller raises its own (the client marks it)
        del self._results[key]
        return result

    def _release(self, key: bytes) -> None:
        """`key` no longer keeps its file from being done."""
        entry = self._owner.pop(key, None)
        if entry is not None:
            self._untaken[entry.seq] -= 1
            if self._untaken[entry.seq] == 0:
                self._all_taken[entry.seq].set()

    def _join(self, key: bytes, line: bytes, model: str) -> None:
        """Add a line to the open file of its model (a batch file holds one model)."""
        self._open.join(key, line, model)
        self._waiting.add(key)

    def flush(self) -> None:
        """Seal every open file now: nothing more is coming until answers do."""
        self._open.flush()

    def _seal(self, opened: OpenFile) -> None:
        """A sealed file's keys belong to it until its results are taken; a task runs it."""
        self._claim(opened.entry, opened.keys)
        self._start(opened.entry, opened)

    def _start(self, entry: FileEntry, opened: OpenFile | None) -> None:
        assert self._group is not None, "the run starts a batch backend's background work"
        self._drives[entry.seq] = self._group.create_task(self._drive(entry, opened),
                                                          name=f"batch-{entry.seq}")

    async def drain(self, complete: bool) -> None:
        """Once the pipeline has ended: let each file whose results were all taken commit
        them and be marked done. After a pipeline that ran to its end, a file whose answers
        nobody asked for was all cache hits (its answers were committed by an earlier
        session): done too. After a stop it stays open: its seeds were not all replayed."""
        for entry in {e.seq: e for e in self._owner.values()}.values():
            keys = self._keys_of(entry)
            if complete and keys and all(k in self._results for k in keys):
                for key in keys:
                    self._release(key)
        finishing = [task for seq, task in self._drives.items()
                     if self._all_taken[seq].is_set() and not task.done()]
        if finishing:
            await asyncio.wait(finishing)

    # -- one file, start to end -----------------------------------------------------------
    async def _drive(self, entry: FileEntry, opened: OpenFile | None) -> None:
        assert self.ledger is not None and self.runner is not None
        path = self.dir / entry.name
        if opened is not None:  # fresh: the intent before any upload
            await self.ledger.intend(entry, opened.keys)
            crash_point("after_seal")
        try:
            ran = await self.runner.run(entry, path, resumed=opened is None)
        except FatalUpstream as error:
            await self._settle(entry, path, {}, error)
            raise
        except BackendError as error:  # the file could not be run: its requests fail alone
            ran = error
        if isinstance(ran, BaseException):
            results = dict.fromkeys(self._keys_of(entry), ran)
        else:
            if entry.status is None:  # a local runner has no provider status to record
                await self.ledger.status(entry, "completed", {})
            results = await self._read(entry, ran)
        await self._settle(entry, path, results, None)
        crash_point("before_commit")
        await self._all_taken[entry.seq].wait()
        if self._barrier is not None:
            await self._barrier()  # every answer handed out is committed: then done
        await self.ledger.done(entry)
        self.files_done += 1
        del self._drives[entry.seq]
        for name in (entry.name, *(entry.name + end for end in (".out", ".err", ".ran"))):
            (self.dir / name).unlink(missing_ok=True)

    async def _read(self, entry: FileEntry, files: list[Path]) -> dict[bytes, Result]:
        """Every line of a file's result files, by key (they come in any order)."""
        results: dict[bytes, Result] = {}
        chat = self.url.endswith("chat/completions")
        for path in files:
            async for line in lines(path):
                key = _key_of(line)
                if key is not None:
                    results[key] = self._result_of(line, chat, entry.batch_id or entry.name)
        return results

    def _keys_of(self, entry: FileEntry) -> list[bytes]:
        return [k for k, owner in self._owner.items() if owner is entry]

    def _result_of(self, line: dict[str, Any], chat: bool, batch_id: str) -> Result:
        response = line.get("response") or {}
        status, body = response.get("status_code"), response.get("body")
        if status == 200 and isinstance(body, dict):
            try:
                text, finish, calls = first_answer(body, chat)
                return Completion(text, finish, usage_of(body.get("usage")),
                                  model_of(body, self.config.model), tool_calls=calls)
            except BackendError as error:
                return error
        if isinstance(status, int) and status != 200:
            where = self.config.base_urls[0] if self.config.base_urls else "vllm run-batch"
            return refusal(status, {}, orjson.dumps(body).decode(), where, self.where)
        error = line.get("error") or {}
        return LineFailed(f"batch {batch_id}: {error.get('code')}: {error.get('message')}")

    async def _settle(self, entry: FileEntry, path: Path, results: dict[bytes, Result],
                      fatal: BaseException | None) -> None:
        """Each key of the file gets its result (a missing line fails); a failed line goes
        into a later file while it has tries left. The pipeline is told the keys with one."""
        missing = LineFailed(f"{entry.name}: missing from the batch's output and error files")
        tries = self.config.retry.max_attempts
        answered, again = [], []
        for key in self._keys_of(entry):
            result = fatal or results.get(key, missing)
            if isinstance(result, RetryableError):
                if self._resubmitted.get(key, 0) + 1 < tries:
                    again.append(key)  # still waiting: an identical request must not join
                    continue
                result = GaveUp(f"{result} (in {tries} batch files)")
            self._waiting.discard(key)
            self._resubmitted.pop(key, None)
            self._results[key] = result
            answered.append(key)
        if again:
            await self._resubmit(path, again)
        if len(self._waiting) < self.config.batch_files.max_pending:
            self._room.set()
        self._answered(answered)

    async def _resubmit(self, path: Path, keys: list[bytes]) -> None:
        """Put the lines of `keys` into files of their own (new requests go on in the
        next): their items stay parked. A retry is not held back by a file still filling."""
        wanted = {key.hex(): key for key in keys}
        self.flush()
        async for line in lines(path):
            key = wanted.pop(line.get("custom_id") or "", None)
            if key is not None:
                self._release(key)  # its old file need not wait for it
                self._resubmitted[key] = self._resubmitted.get(key, 0) + 1
                self._join(key, orjson.dumps(line) + b"\n", line["body"]["model"])
        self.flush()
        for key in wanted.values():  # its line is gone from its own file: fail, never hang
            self._waiting.discard(key)
            self._results[key] = GaveUp(f"{path.name}: the request's line is gone")
            self._answered([key])

    async def aclose(self) -> None:
        self._open.discard()
        if self.runner is not None:
            await self.runner.aclose()
        if self.ledger is not None:
            self.ledger.close()
        await self._online.aclose()


def _key_of(line: dict[str, Any]) -> bytes | None:
    try:
        return bytes.fromhex(line.get("custom_id") or "")
    except ValueError:
        return None
