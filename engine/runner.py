"""Running a pipeline: build the clients, stages and run directory from a config, run the
pipeline, write the summary. `run` is a coroutine (use it inside a notebook's loop);
`run_sync` works with or without a running loop."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from backends.openai_http import OpenAIHTTPBackend

from .aimd import AIMD
from .client import ModelClient
from .config import BackendConfig, PipelineConfig
from .items import Item
from .permits import PermitPool
from .pipeline import Pipeline
from .retry import RetryPolicy
from .rundir import RunDir, default_run_dir
from .seeds import SeedSource
from .stage import TemplateStage
from .stats import RunStats, StageStats
from .records import template_record
from .tokens import counter_for

@dataclass
class RunOptions:
    run_dir: Path | None = None
    limit: int | None = None
    progress: bool | None = None  # None: live display on a terminal, plain lines otherwise
    progress_interval_s: float = 10.0
    on_start: Callable[["Run"], None] | None = None  # e.g. to install signal handlers
    extra: dict[str, Any] = field(default_factory=dict)


def make_client(name: str, config: BackendConfig) -> ModelClient:
    pool = PermitPool(config.max_in_flight, rpm=config.rpm, tpm=config.tpm,
                      window_s=config.rate_window_s)
    backend = OpenAIHTTPBackend(name, config)
    client = ModelClient(backend, pool,
                         policy=RetryPolicy(config.retry.max_attempts, config.retry.base_s,
                                            config.retry.max_s),
                         aimd=AIMD(config.max_in_flight) if config.adaptive else None,
                         count_tokens=counter_for(str(config.tokenizer) if config.tokenizer else None),
                         default_max_tokens=config.default_max_tokens,
                         rng=random.Random())
    backend.on_rate_hints = client.on_rate_hints
    return client


class Run:
    """One run of a pipeline; `stats`, `pipeline` and `clients` are live while it runs."""

    def __init__(self, config: PipelineConfig, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.dir = RunDir(options.run_dir or default_run_dir(config.name))
        self.clients = {name: make_client(name, b) for name, b in config.backends.items()}
        first = next(iter(config.backends.values()))
        self.source = SeedSource(config.seeds, count=counter_for(
            str(first.tokenizer) if first.tokenizer else None))
        if config.agentinstruct is not None:
            self._build_flow(config)
        else:
            self._build_stages(config)
        self.pipeline = Pipeline(self.stages, self._emit)

    def _build_stages(self, config: PipelineConfig) -> None:
        self.stats = RunStats([StageStats(s.name) for s in config.stages],
                              seeds_expected=self.options.limit,
                              first_fan_out=config.stages[0].fan_out)
        self.stages = [
            TemplateStage(s, depth, self.clients[s.backend],
                          s.model or config.backends[s.backend].model,
                          config.backends[s.backend].api, self.stats.stages[depth], self._reject)
            for depth, s in enumerate(config.stages)]
        self._make_record = template_record(config)

    def _build_flow(self, config: PipelineConfig) -> None:
        from .flows.agentinstruct import Flow, build_stages, make_record, stage_names

        assert config.agentinstruct is not None
        flow = Flow(config.agentinstruct)
        self.stats = RunStats([StageStats(n) for n in stage_names(config.agentinstruct)],
                              seeds_expected=self.options.limit)
        by_name = {s.name: s for s in self.stats.stages}
        self.stages = build_stages(config, flow, self.clients, by_name.__getitem__, self._reject)
        self._make_record = make_record(flow)

    def seeds(self) -> Iterator[Item]:
        seeds = (Item(s.id, s.id, {"seed": s.text, "kind": getattr(s, "kind", "prose"),
                                   "language": getattr(s, "language", None), "seed_index": i},
                      [(s.id, "seed")])
                 for i, s in enumerate(self.source))
        return itertools.islice(seeds, self.options.limit) if self.options.limit else seeds

    def _admit(self) -> None:
        self.stats.seeds_admitted += 1

    def _emit(self, item: Item) -> None:
        record = self._make_record(item)
        self.dir.output.write(record)
        self.stats.count_record(record)

    def _reject(self, record: dict[str, Any]) -> None:
        self.dir.rejects.write(record)
        reason = record.get("validator") or record.get("error") or "unknown"
        self.stats.rejects[f"{record['stage']}: {reason}"] += 1

    async def execute(self) -> dict[str, Any]:
        from .metrics_poller import poll_metrics
        from .progress import show_progress

        self.dir.write_config(self.config)
        done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(show_progress(self, done, self.options.progress,
                                                self.options.progress_interval_s))
                for name, backend in self.config.backends.items():
                    if backend.metrics:
                        group.create_task(poll_metrics(
                            self.clients[name], backend.base_urls, backend.metrics_interval_s,
                            backend.max_in_flight, done))
                try:
                    await self.pipeline.run(self.seeds(), self._admit)
                finally:
                    done.set()
        finally:
            self.stats.finished = time.monotonic()
            summary = self.summary()
            self.dir.write_summary(summary)
            for client in self.clients.values():
                await client.aclose()
            self.dir.close()
        return summary

    def summary(self) -> dict[str, Any]:
        summary = self.stats.summary()
        summary["run_dir"] = str(self.dir.path)
        summary["seed_input"] = self.source.report.summary()
        summary["backends"] = {
            name: {"requests": c.requests, "retries": c.retries, "errors": dict(c.errors),
                   "prompt_tokens": c.usage.prompt_tokens,
                   "completion_tokens": c.usage.completion_tokens}
            for name, c in self.clients.items()}
        return summary


async def run(config: PipelineConfig, options: RunOptions | None = None) -> dict[str, Any]:
    """Run a pipeline to the end and return its summary (also written to summary.json)."""
    the_run = Run(config, options or RunOptions())
    if the_run.options.on_start:
        the_run.options.on_start(the_run)
    return await the_run.execute()


def run_sync(config: PipelineConfig, options: RunOptions | None = None) -> dict[str, Any]:
    """`run` for synchronous callers; inside a running loop (a notebook) it runs on a thread."""
    from .loop import new_event_loop

    def go() -> dict[str, Any]:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(run(config, options))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return go()
    result: dict[str, Any] = {}
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.update(go())
        except BaseException as exc:  # handed to the calling thread, re-raised there
            error.append(exc)

    thread = threading.Thread(target=target, name="gristmill-run")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result
