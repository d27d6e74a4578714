"""The provider's Files and Batch API over aiohttp: upload, find, create, retrieve, download,
cancel. Errors are mapped at this edge like online answers (`refusals.py`): a refused key is
fatal, a 5xx or a reset is retryable."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import orjson

from gristmill.errors import BackendError, ConnectionReset, FatalUpstream

from gristmill.backends.openai_http.refusals import Where, refusal, server_said

log = logging.getLogger("gristmill.batch")
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
CHUNK = 1 << 20


class BatchApi:
    def __init__(self, base_url: str, headers: dict[str, str], where: Where,
                 timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.where = where
        # no total deadline: an output file may take long to download; a stalled read may not
        self.session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=60.0, sock_read=timeout_s))

    async def aclose(self) -> None:
        await self.session.close()

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = self.base_url + path
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                body = await resp.read()
                if resp.status == 404:  # not a model: a batch or a file the provider lacks
                    raise FatalUpstream(
                        f"backend {self.where.backend!r}: {method} {url} answered 404: "
                        f"{server_said(body.decode(errors='replace'))[1]!r}; the provider "
                        "does not know this batch or file (another account or key?)")
                if resp.status != 200:
                    raise refusal(resp.status, resp.headers, body.decode(errors="replace"),
                                  self.base_url, self.where)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionReset(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ConnectionReset(f"{method} {url}: not JSON: {body[:200]!r}") from None
        return data if isinstance(data, dict) else {}

    # -- files ----------------------------------------------------------------------------
    async def upload(self, path: Path, name: str) -> str:
        """The id of `path` uploaded as `name` for batch use (streamed from disk)."""
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        with path.open("rb") as fh:
            form.add_field("file", fh, filename=name, content_type="application/jsonl")
            return (await self._json("POST", "/files", data=form))["id"]

    async def find_file(self, name: str) -> str | None:
        """The id of an uploaded batch file named `name` (an upload whose id was not recorded
        before a crash), newest first."""
        after = None
        while True:
            params = {"purpose": "batch", "limit": "10000", **({"after": after} if after else {})}
            page = await self._json("GET", "/files", params=params)
            for entry in page.get("data") or ():
                if entry.get("filename") == name:
                    return entry["id"]
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]

    async def download(self, file_id: str, dest: Path) -> None:
        """A file's content to `dest`, streamed (an output file may be hundreds of MB)."""
        url = f"{self.base_url}/files/{file_id}/content"
        try:
            async with self.session.get(url) as resp:
                if resp.status != 200:
                    raise refusal(resp.status, resp.headers, await resp.text(errors="replace"),
                                  self.base_url, self.where)
                with dest.open("wb") as fh:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        fh.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionReset(f"GET {url}: {type(exc).__name__}: {exc}") from None

    # -- batches --------------------------------------------------------------------------
    async def create(self, file_id: str, endpoint: str, window: str,
                     metadata: dict[str, str]) -> dict[str, Any]:
        return await self._json("POST", "/batches", json={
            "input_file_id": file_id, "endpoint": endpoint, "completion_window": window,
            "metadata": metadata})

    async def find_batch(self, metadata: dict[str, str]) -> dict[str, Any] | None:
        """A batch whose metadata holds `metadata` (one created before a crash lost its id)."""
        after = None
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            page = await self._json("GET", "/batches", params=params)
            for batch in page.get("data") or ():
                if metadata.items() <= (batch.get("metadata") or {}).items():
                    return batch
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/batches/{batch_id}")

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/batches/{batch_id}/cancel")


async def patiently(call: Any, *args: Any, recover: Any = None, base_s: float = 1.0,
                    max_s: float = 60.0) -> Any:
    """`call(*args)`, retried with backoff on transient errors (a reset, a 5xx, a 429) for as
    long as they last: giving up on a file's bookkeeping would leave its requests in limbo
    (uploaded or not? created or not?). Before each retry, `recover()` may find what a call
    that seemed to fail did after all (an upload or a batch the provider made though the
    answer was lost): it is used instead of asking twice. Other errors pass; fatal ones stop
    the run."""
    attempt = 0
    while True:
        try:
            return await call(*args)
        except BackendError as error:
            if not error.retryable:
                raise
            wait = min(max_s, base_s * 2 ** attempt)
            log.warning("batch API: %s; again in %.0fs", error, wait)
            await asyncio.sleep(wait)
            attempt += 1
            if recover is not None and (found := await patiently(recover)) is not None:
                return found


async def lines(path: Path) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, read in a thread about a megabyte of lines at a
    time (an output file may be larger than memory should hold)."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.readlines, CHUNK):
            for line in chunk:
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # a torn line: its custom_id counts as missing
