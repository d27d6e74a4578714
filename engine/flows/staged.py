"""The staged flow: the stages a pipeline config lists, each a model call made from templates,
and its output record from the config's `record` templates."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gristmill.config.pipeline import PipelineConfig, StageConfig
from gristmill.flows.dialogue import DialogueStage
from gristmill.flows.items import Item
from gristmill.flows.stage import RejectSink, TemplateStage
from gristmill.flows.stats import RunStats, StageStats
from gristmill.scheduling.client import ModelClient
from gristmill.seeds.report import Seed
from gristmill.validation.stage import StageValidation

if TYPE_CHECKING:
    from gristmill.retrieval.index import PassageIndex
    from gristmill.retrieval.stage import Retrieval


def first_item(seed: Seed, index: int) -> Item:
    """A seed's item: its text (`{{ seed }}` in templates), kind, language and structured
    forms (`Seed.template_values`)."""
    return Item(seed.id, seed.id, seed.template_values(), [(seed.id, "seed")])


def new_stats(config: PipelineConfig, limit: int | None) -> RunStats:
    return RunStats([StageStats(s.name) for s in config.stages], seeds_expected=limit,
                    first_fan_out=config.stages[0].fan_out)


def build_stages(config: PipelineConfig, clients: dict[str, ModelClient], stats: RunStats,
                 reject: RejectSink, base_dir: Path | None,
                 index: PassageIndex | None = None) -> list[TemplateStage]:
    """The config's stages; `index` (the run's, when it has `retrieval`) serves those that
    `retrieve`."""
    stages = []
    for depth, s in enumerate(config.stages):
        backend = config.backends[s.backend]
        lead = (s, depth, clients[config.client_name(s)], s.model or backend.model, backend.api,
                stats.stages[depth], reject,
                StageValidation(s.validators, s.name, stats.validation, base_dir),
                _retrieval(s, index))
        stages.append(TemplateStage(*lead) if s.dialogue is None
                      else DialogueStage(*lead, native_tools=backend.tools_native))
    return stages


def _retrieval(stage: StageConfig, index: PassageIndex | None) -> Retrieval | None:
    if stage.retrieve is None:
        return None
    from gristmill.retrieval.stage import Retrieval  # bm25s: only when used

    assert index is not None, "a config with `retrieval` has `retrieval`: the run opens it"
    return Retrieval(stage.name, stage.retrieve, index)
