"""What a stage with `retrieve:` does to an item before its prompt is rendered: search the
index with the rendered query and add `passages` and `distractors` (lists of {id, text}) to
the item's values, and each passage's seed id to its lineage (stage `<stage>.passage` or
`<stage>.distractor`), so every record says which passages it was made from."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from gristmill.config.retrieval import RetrieveConfig
from gristmill.flows.items import Item
from gristmill.flows.templates import compile_template
from gristmill.retrieval.index import PassageIndex
from gristmill.retrieval.ranking import drawn


class Retrieval:
    def __init__(self, stage: str, config: RetrieveConfig, index: PassageIndex) -> None:
        self.stage = stage
        self.config = config
        self.index = index
        self._query = compile_template(config.query)

    async def __call__(self, item: Item) -> Item:
        query = self._query.render({**item.values, "id": item.id, "seed_id": item.seed_id})
        # a search reads the whole score column of each query word: off the event loop
        passages, distractors = await asyncio.to_thread(self.find, query, item)
        lineage = [(p["id"], f"{self.stage}.passage") for p in passages] + \
            [(d["id"], f"{self.stage}.distractor") for d in distractors]
        return replace(item, values={**item.values, "passages": passages,
                                     "distractors": distractors},
                       lineage=item.lineage + lineage, usage=list(item.usage))

    def find(self, query: str, item: Item) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The supporting passages (the best `k` with a score above zero) and the
        distractors (drawn from the next `distractor_pool` ranks): disjoint by rank."""
        config = self.config
        exclude = self.index.row_of(item.seed_id) if config.exclude_self else None
        pool = config.distractor_pool if config.distractors else 0
        rows, scores = self.index.search(query, config.k + pool, exclude)
        passages = [self.index.passage(int(r)) for r, s in zip(rows[:config.k],
                                                                scores[:config.k]) if s > 0]
        lower = rows[config.k:]
        chosen = drawn(item.id, [self.index.ids[r].decode() for r in lower], config.distractors)
        return passages, [self.index.passage(int(lower[i])) for i in chosen]
