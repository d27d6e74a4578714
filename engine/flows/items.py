"""Work items and their ids.

Every item id is a hash of its parent's id and the step that made it, so a re-run of the same
config over the same seeds produces the same ids (and the same requests)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def child_id(parent_id: str, step: str) -> str:
    return hashlib.blake2b(f"{parent_id}/{step}".encode(), digest_size=8).hexdigest()


def seed_id(source: str, text: str) -> str:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(source.encode())
    digest.update(b"\0")
    digest.update(text.encode())
    return digest.hexdigest()


@dataclass(slots=True)
class Item:
    id: str
    seed_id: str
    values: dict[str, Any]  # template variables: seed text, then each stage's output by name
    lineage: list[tuple[str, str]] = field(default_factory=list)  # (id, stage) from the seed on
    usage: list[int] = field(default_factory=lambda: [0, 0])  # prompt, completion tokens
    model: str = ""

    def child(self, stage: str, step: str, output: Any, key: str | None = None) -> "Item":
        """The item made from this one by `stage`; its output lands in values[key or stage]."""
        new_id = child_id(self.id, f"{stage}:{step}")
        values = dict(self.values)
        values[key or stage] = output
        return Item(new_id, self.seed_id, values, self.lineage + [(new_id, stage)],
                    list(self.usage), self.model)
