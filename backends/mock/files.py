"""The mock's Files API store: the bytes of every file on disk (`--files-dir`, else a temp
dir the server removes on exit), one file per id named by the id; only the metadata is in
memory, so a 200 MB batch input costs the server no memory. Pure bookkeeping: no HTTP."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PURPOSES = ("batch", "batch_output", "assistants", "fine-tune", "vision", "user_data")
LIST_LIMIT = 10_000  # OpenAI's default page of GET /v1/files


@dataclass(slots=True)
class FileInfo:
    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": self.bytes,
                "created_at": self.created_at, "filename": self.filename,
                "purpose": self.purpose, "status": "processed", "status_details": None}


class FileStore:
    def __init__(self, directory: str | None) -> None:
        self.owned = directory is None  # a temp dir is ours to remove; a given one is not
        self.dir = Path(tempfile.mkdtemp(prefix="gristmill-mock-files-") if directory is None
                        else directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, FileInfo] = {}  # in creation order
        self.prefix, self.count = os.urandom(6).hex(), 0

    def new_id(self) -> str:
        self.count += 1
        return f"file-{self.prefix}{self.count:06x}"

    def path(self, file_id: str) -> Path:
        return self.dir / file_id

    def open_new(self) -> tuple[str, IO[bytes]]:
        """A new id and its file on disk, open for writing; `add` makes it visible."""
        file_id = self.new_id()
        return file_id, open(self.path(file_id), "wb")

    def add(self, file_id: str, filename: str, purpose: str) -> FileInfo:
        info = FileInfo(file_id, self.path(file_id).stat().st_size, int(time.time()),
                        filename, purpose)
        self.files[file_id] = info
        return info

    def discard(self, file_id: str) -> None:
        """Forget a file that was never added or is deleted (its bytes go too)."""
        self.files.pop(file_id, None)
        self.path(file_id).unlink(missing_ok=True)

    def get(self, file_id: str) -> FileInfo | None:
        return self.files.get(file_id)

    def page(self, purpose: str | None, after: str | None, limit: int,
             newest_first: bool) -> dict[str, Any]:
        items = [f for f in self.files.values() if purpose is None or f.purpose == purpose]
        if newest_first:
            items.reverse()
        return list_page([f.as_dict() for f in items], after, limit)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.dir, ignore_errors=True)


def list_page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's cursor page: the `limit` items after the one whose id is `after`."""
    start = 0
    if after is not None:
        start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), len(items))
    data = items[start:start + limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + limit < len(items)}
