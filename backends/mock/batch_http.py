"""The HTTP edge of the mock's Files and Batch API (aiohttp): parses a request, asks the
`FileStore` or `Batches`, answers in OpenAI's shapes. An upload streams to disk in chunks,
file content streams from disk."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from gristmill.backends.mock.batches import BatchError, Batches
from gristmill.backends.mock.files import LIST_LIMIT, PURPOSES, FileStore
from gristmill.backends.mock.wire import error_body

UPLOAD_MAX = 512 * 1024 * 1024  # OpenAI's largest file; a batch input is held to less
CHUNK = 256 * 1024
JSON = "application/json"
PREFIXES = ("/v1/files", "/v1/batches")


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type=JSON)


def _error(status: int, message: str, code: str) -> web.Response:
    return web.Response(status=status, body=error_body(message, code), content_type=JSON)


def _not_found(kind: str, object_id: str) -> web.Response:
    return _error(404, f"No such {kind} object: {object_id}", "not_found")


def _limit(request: web.BaseRequest, default: int, most: int) -> int | None:
    text = request.query.get("limit")
    if text is None:
        return default
    return int(text) if text.isdigit() and 1 <= int(text) <= most else None


class BatchApi:
    def __init__(self, store: FileStore, batches: Batches) -> None:
        self.store, self.batches = store, batches

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        method, parts = request.method, request.path.strip("/").split("/")[1:]
        kind, rest = parts[0], parts[1:]  # "files" or "batches", then the id and the verb
        if kind == "files":
            if not rest:
                if method == "POST":
                    return await self._upload(request)
                if method == "GET":
                    return self._list_files(request)
            elif len(rest) == 1 and method in ("GET", "DELETE"):
                return self._file(rest[0], method == "DELETE")
            elif rest[1:] == ["content"] and method == "GET":
                return self._content(rest[0])
        elif kind == "batches":
            if not rest:
                if method == "POST":
                    return await self._create(request)
                if method == "GET":
                    return self._list_batches(request)
            elif (len(rest) == 1 and method == "GET") or (rest[1:] == ["cancel"]
                                                          and method == "POST"):
                return self._batch(rest[0], cancel=len(rest) == 2)
        return _error(404, f"no route for {method} {request.path}", "not_found")

    # -- files ----------------------------------------------------------------------------
    async def _upload(self, request: web.BaseRequest) -> web.Response:
        if request.content_type != "multipart/form-data":
            return _error(400, "upload a file as multipart/form-data", "invalid_request")
        purpose, file_id, filename = None, None, "upload.jsonl"
        try:
            async for part in await request.multipart():
                if not isinstance(part, BodyPartReader):
                    continue  # nested multipart: not a form field
                if part.name == "purpose":
                    purpose = await part.text()
                elif part.name == "file" and file_id is None:
                    filename = part.filename or filename
                    file_id = await self._save(part)
        except UploadTooLarge as exc:
            return _error(413, str(exc), "file_too_large")
        if file_id is None or purpose not in PURPOSES:
            if file_id is not None:
                self.store.discard(file_id)
            return _error(400, f"an upload needs a 'file' and a 'purpose' (one of "
                          f"{', '.join(PURPOSES)})", "invalid_request")
        return _json(self.store.add(file_id, filename, purpose).as_dict())

    async def _save(self, part: BodyPartReader) -> str:
        """The part's bytes to a new file on disk, a chunk at a time."""
        file_id, out = self.store.open_new()
        size = 0
        with out:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > UPLOAD_MAX:
                    break
                out.write(chunk)
        if size > UPLOAD_MAX:
            self.store.discard(file_id)
            raise UploadTooLarge(f"a file may have at most {UPLOAD_MAX} bytes")
        return file_id

    def _list_files(self, request: web.BaseRequest) -> web.Response:
        limit = _limit(request, LIST_LIMIT, LIST_LIMIT)
        order = request.query.get("order", "desc")
        if limit is None or order not in ("asc", "desc"):
            return _error(400, "limit is 1 to 10000 and order asc or desc", "invalid_value")
        return _json(self.store.page(request.query.get("purpose"), request.query.get("after"),
                                     limit, order == "desc"))

    def _file(self, file_id: str, delete: bool) -> web.Response:
        info = self.store.get(file_id)
        if info is None:
            return _not_found("File", file_id)
        if not delete:
            return _json(info.as_dict())
        self.store.discard(file_id)
        return _json({"id": file_id, "object": "file", "deleted": True})

    def _content(self, file_id: str) -> web.StreamResponse:
        if self.store.get(file_id) is None:
            return _not_found("File", file_id)
        return web.FileResponse(self.store.path(file_id), chunk_size=CHUNK,
                                headers={"Content-Type": "application/octet-stream"})

    # -- batches --------------------------------------------------------------------------
    async def _create(self, request: web.BaseRequest) -> web.Response:
        try:
            params = orjson.loads(await request.read())
            return _json(self.batches.create(params).as_dict())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"invalid JSON body: {exc}", "invalid_json")
        except BatchError as exc:
            return _error(exc.status, str(exc), exc.code)

    def _list_batches(self, request: web.BaseRequest) -> web.Response:
        limit = _limit(request, 20, 100)
        if limit is None:
            return _error(400, "limit is 1 to 100", "invalid_value")
        return _json(self.batches.page(request.query.get("after"), limit))

    def _batch(self, batch_id: str, cancel: bool) -> web.Response:
        batch = self.batches.batches.get(batch_id)
        if batch is None:
            return _not_found("Batch", batch_id)
        try:
            return _json((self.batches.cancel(batch) if cancel else batch).as_dict())
        except BatchError as exc:
            return _error(exc.status, str(exc), exc.code)


class UploadTooLarge(ValueError):
    pass
