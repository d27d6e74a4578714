"""A file's journey through a provider's Files and Batch API: upload (or find the upload a
crash left unrecorded), create (or find the batch by its metadata), poll its status with
backoff until it ends, download both result files. Each id is committed to the ledger as soon
as it exists."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from gristmill.config.pipeline import BackendConfig
from gristmill.errors import BadRequest, FatalUpstream

from gristmill.backends.openai_batch.api import TERMINAL, BatchApi, patiently
from gristmill.backends.openai_batch.crash import crash_point
from gristmill.backends.openai_batch.ledger import FileEntry, Ledger


# validation errors that every file of this size would meet: a setting to change, not an item
LIMITS = ("too_many_requests", "file_too_large")


def _backlogged(batch: dict[str, Any]) -> bool:
    """Failed only because the provider's enqueued-token limit is reached for now."""
    errors = (batch.get("errors") or {}).get("data") or []
    return batch.get("status") == "failed" and bool(errors) and all(
        e.get("code") == "token_limit_exceeded" for e in errors)


class HostedBatches:
    def __init__(self, api: BatchApi, ledger: Ledger, config: BackendConfig, url: str,
                 token: str) -> None:
        self.api, self.ledger, self.config = api, ledger, config
        self.url, self.token = url, token

    async def run(self, entry: FileEntry, path: Path, resumed: bool) -> list[Path] | BaseException:
        """The result files of `entry` once its batch has ended; an error for every line if
        the batch failed as a whole."""
        await self._upload(entry, path, resumed)
        await self._create(entry, resumed)
        while True:
            batch = await self._wait_for_end(entry)
            if not _backlogged(batch):
                break
            # The provider's queue of enqueued tokens is full: the same file waits and is
            # submitted again, spending no request's retry budget (the queue empties as the
            # run's other batches end, hours at worst).
            await asyncio.sleep(self.config.batch_files.poll_max_s)
            await self._create(entry, resumed=True, failed=entry.batch_id)
        if batch.get("status") == "failed":
            failure = self._batch_failure(batch)
            if isinstance(failure, FatalUpstream):  # this file will never run: a resume puts
                await self.ledger.done(entry)  # its requests into new (smaller) files
                raise failure
            return failure
        files = []
        for field, suffix in (("output_file_id", ".out"), ("error_file_id", ".err")):
            if batch.get(field):
                dest = path.with_name(path.name + suffix)
                await patiently(self.api.download, batch[field], dest)
                crash_point("during_download")
                files.append(dest)
        return files

    async def _upload(self, entry: FileEntry, path: Path, resumed: bool) -> None:
        if entry.file_id is not None:
            return
        find = partial(self.api.find_file, entry.name)
        found = await patiently(find) if resumed else None
        file_id = found or await patiently(self.api.upload, path, entry.name, recover=find)
        crash_point("after_upload")
        await self.ledger.uploaded(entry, file_id)

    async def _create(self, entry: FileEntry, resumed: bool, failed: str | None = None) -> None:
        """A batch of the file: one found by its metadata (a create whose answer was lost,
        other than the `failed` one), else a new one."""
        if entry.batch_id is not None and failed is None:
            return
        metadata = {"gristmill_run": self.token, "gristmill_file": entry.name}

        async def find() -> dict[str, Any] | None:
            batch = await self.api.find_batch(metadata)
            return batch if batch is not None and batch["id"] != failed else None
        found = await patiently(find) if resumed else None
        batch = found or await patiently(self.api.create, entry.file_id, self.url,
                                         self.config.batch_files.completion_window, metadata,
                                         recover=find)
        crash_point("after_create")
        await self.ledger.created(entry, batch["id"], batch.get("status") or "validating")

    async def _wait_for_end(self, entry: FileEntry) -> dict[str, Any]:
        """Poll the batch's status with backoff until it ends: the provider has no event to
        wait on (the one polling loop gristmill has)."""
        limits = self.config.batch_files
        delay = limits.poll_s
        while True:
            batch = await patiently(self.api.retrieve, entry.batch_id)
            await self.ledger.status(entry, batch.get("status") or "unknown",
                                     batch.get("request_counts") or {})
            if batch.get("status") in TERMINAL:
                return batch
            await asyncio.sleep(delay)
            delay = min(limits.poll_max_s, delay * 2)

    def _batch_failure(self, batch: dict[str, Any]) -> BaseException:
        """A batch that failed validation: its requests fail, or the run stops when the file
        was over the provider's limits (every file would be)."""
        errors = (batch.get("errors") or {}).get("data") or [{}]
        code, message = errors[0].get("code"), errors[0].get("message")
        said = f"batch {batch.get('id')} failed validation: {code}: {message}"
        if code in LIMITS:
            limits = self.config.batch_files
            return FatalUpstream(
                f"{said} ({self.api.base_url}); the provider's limits are below batch_files "
                f"(max_requests {limits.max_requests}, max_bytes {limits.max_bytes}): lower "
                "them, then `gristmill resume`")
        return BadRequest(said)

    async def aclose(self) -> None:
        await self.api.aclose()
