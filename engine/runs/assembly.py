"""A run's parts, built from its config: a client per backend (the backend behind its permits,
retries and AIMD), the seed source, the flow's stages and record maker, and the judge."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gristmill.backends.factory import build_backend
from gristmill.config.pipeline import BackendConfig, ErrorRateConfig, PipelineConfig
from gristmill.config.prices import price_for
from gristmill.scheduling.spend import Price
from gristmill.dataset.records import RecordMaker, template_record
from gristmill.flows import staged
from gristmill.flows.items import Item
from gristmill.flows.stage import RejectSink
from gristmill.flows.stats import RunStats, StageStats
from gristmill.scheduling.aimd import AIMD
from gristmill.scheduling.client import ModelClient
from gristmill.scheduling.error_rate import ErrorRateGuard
from gristmill.scheduling.permits import PermitPool, learn_rate_hints
from gristmill.scheduling.retry import RetryPolicy
from gristmill.scheduling.tokens import counter_for
from gristmill.seeds import SeedSource
from gristmill.seeds.report import Seed

if TYPE_CHECKING:
    from gristmill.retrieval.index import PassageIndex


def batch_price_for(config: BackendConfig, model: str) -> Price | None:
    """A batch client pays the discounted price, worst cases included."""
    price = price_for(config, model)
    return price.batched() if price is not None else None


def make_client(name: str, config: BackendConfig, run_dir: Path | None = None,
                error_rate: ErrorRateConfig | None = None) -> ModelClient:
    pool = PermitPool(config.max_in_flight, rpm=config.rpm, tpm=config.tpm,
                      window_s=config.rate_window_s)
    backend = build_backend(name, config, on_rate_hints=partial(learn_rate_hints, pool),
                            log_dir=run_dir / "logs" if run_dir else None, work_dir=run_dir)
    tokenizer = str(config.tokenizer) if config.tokenizer else None
    return ModelClient(backend, pool,
                       policy=RetryPolicy(config.retry.max_attempts, config.retry.base_s,
                                          config.retry.max_s, config.retry.malformed_retries),
                       aimd=AIMD(config.max_in_flight) if config.adaptive else None,
                       count_tokens=counter_for(tokenizer),
                       default_max_tokens=config.default_max_tokens, rng=random.Random(),
                       guard=ErrorRateGuard(error_rate.rate, error_rate.window)
                       if error_rate is not None else None,
                       price_of=partial(batch_price_for if config.mode == "batch"
                                        else price_for, config))


@dataclass
class Parts:
    clients: dict[str, ModelClient]
    source: SeedSource
    stats: RunStats
    stages: list[Any]
    make_record: RecordMaker
    first_item: Callable[[Seed, int], Item]  # the flow's item for a seed
    judge: Any = None  # the judge stage, last of `stages`, when the config judges


def seed_source(config: PipelineConfig) -> SeedSource:
    """The config's seeds, chunked in the tokens of its first backend (the rate limiter's)."""
    first = next(iter(config.backends.values()))
    return SeedSource(config.seeds, count=counter_for(
        str(first.tokenizer) if first.tokenizer else None))


def assemble(config: PipelineConfig, run_dir: Path, limit: int | None,
             reject: RejectSink, index: PassageIndex | None = None) -> Parts:
    configs = config.client_configs()
    clients = {name: make_client(backend, b, run_dir, config.stop_on_error_rate)
               for name, (backend, b) in configs.items()}
    for name, (backend, b) in configs.items():  # batch files regenerate through online twins
        if b.mode == "batch" and b.batch_files.regenerate == "online":
            clients[name].regenerate_with = clients[config.online_client(backend)]
    source = seed_source(config)
    if config.agentinstruct is not None:
        parts = _agentinstruct(config, clients, source, limit, reject, index)
    else:
        stats = staged.new_stats(config, limit)
        parts = Parts(clients, source, stats,
                      staged.build_stages(config, clients, stats, reject, config._base_dir,
                                          index),
                      template_record(config), staged.first_item)
    if config.judge and config.judge.enabled:
        _add_judge(parts, config, run_dir, reject)
    return parts


def _agentinstruct(config: PipelineConfig, clients: dict[str, ModelClient], source: SeedSource,
                   limit: int | None, reject: RejectSink, index: PassageIndex | None) -> Parts:
    from gristmill.flows import agentinstruct

    assert config.agentinstruct is not None
    flow = agentinstruct.Flow(config.agentinstruct)
    stats = agentinstruct.new_stats(config.agentinstruct, limit)
    by_name = {s.name: s for s in stats.stages}
    stages = agentinstruct.build_stages(config, flow, clients, by_name.__getitem__, reject,
                                        stats.validation, index)
    return Parts(clients, source, stats, stages, agentinstruct.make_record(flow),
                 agentinstruct.first_item)


def _add_judge(parts: Parts, config: PipelineConfig, run_dir: Path, reject: RejectSink) -> None:
    """The judge after the last stage; it sees each record as it will be written."""
    from gristmill.flywheel.judge_stage import JudgeStage, with_verdict
    from gristmill.flywheel.runrecords import judge_pool

    judge = config.judge
    assert judge is not None
    backend = config.backends[judge.backend]
    stats = StageStats("judge")
    parts.stats.stages.append(stats)
    parts.judge = JudgeStage(judge, len(parts.stages), parts.clients[config.client_name(judge)],
                             judge.model or backend.model, backend.api, stats, reject,
                             parts.stats.validation, parts.make_record,
                             judge_pool(judge, run_dir))
    parts.stages.append(parts.judge)
    parts.make_record = with_verdict(parts.make_record)
