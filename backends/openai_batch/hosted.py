"""A file's journey through a provider's Files and Batch API: upload (or find the upload a
crash left unrecorded), create (or find the batch by its metadata), poll its status with
backoff until it ends, download both result files. Each id is committed to the ledger as soon
as it exists."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gristmill.config.pipeline import BackendConfig
from gristmill.errors import BadRequest, RateLimited

from gristmill.backends.openai_batch.api import TERMINAL, BatchApi, patiently
from gristmill.backends.openai_batch.crash import crash_point
from gristmill.backends.openai_batch.ledger import FileEntry, Ledger


class HostedBatches:
    def __init__(self, api: BatchApi, ledger: Ledger, config: BackendConfig, url: str,
                 token: str) -> None:
        self.api, self.ledger, self.config = api, ledger, config
        self.url, self.token = url, token

    async def run(self, entry: FileEntry, path: Path, resumed: bool) -> list[Path] | BaseException:
        """The result files of `entry` once its batch has ended; an error for every line if
        the batch failed as a whole."""
        await self._submit(entry, path, resumed)
        batch = await self._wait_for_end(entry)
        if batch.get("status") == "failed":
            return self._batch_failure(batch)
        files = []
        for field, suffix in (("output_file_id", ".out"), ("error_file_id", ".err")):
            if batch.get(field):
                dest = path.with_name(path.name + suffix)
                await patiently(self.api.download, batch[field], dest)
                crash_point("during_download")
                files.append(dest)
        return files

    async def _submit(self, entry: FileEntry, path: Path, resumed: bool) -> None:
        metadata = {"gristmill_run": self.token, "gristmill_file": entry.name}
        if entry.file_id is None:
            found = await patiently(self.api.find_file, entry.name) if resumed else None
            file_id = found or await patiently(self.api.upload, path, entry.name)
            crash_point("after_upload")
            await self.ledger.uploaded(entry, file_id)
        if entry.batch_id is None:
            found = await patiently(self.api.find_batch, metadata) if resumed else None
            batch = found or await patiently(self.api.create, entry.file_id, self.url,
                                             self.config.batch_files.completion_window, metadata)
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
        errors = (batch.get("errors") or {}).get("data") or [{}]
        code, message = errors[0].get("code"), errors[0].get("message")
        text = f"batch {batch.get('id')} failed validation: {code}: {message}"
        if code == "token_limit_exceeded":  # too much enqueued now: later it fits
            return RateLimited(text, retry_after=self.config.batch_files.poll_s)
        return BadRequest(text)

    async def aclose(self) -> None:
        await self.api.aclose()
