"""Running a pipeline: build the clients, stages and run directory from a config, run the
pipeline, write the summary. `run` is a coroutine (use it inside a notebook's loop);
`run_sync` works with or without a running loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.protocol import Backend

from gristmill.scheduling.aimd import AIMD
from gristmill.dataset.cache import AnswerCache
from gristmill.scheduling.client import ModelClient
from gristmill.config.pipeline import BackendConfig, PipelineConfig
from gristmill.runs.gc_tuning import tuned_gc
from gristmill.flows.items import Item
from gristmill.scheduling.permits import PermitPool
from gristmill.flows.pipeline import Pipeline
from gristmill.scheduling.retry import RetryPolicy
from gristmill.runs.rundir import RunDir, default_run_dir
from gristmill.seeds import SeedSource
from gristmill.dataset.sink import id_key
from gristmill.flows.stage import TemplateStage
from gristmill.validation.stage import StageValidation
from gristmill.runs.stats import RunStats, StageStats
from gristmill.dataset.store import Store
from gristmill.dataset.records import template_record
from gristmill.scheduling.tokens import counter_for

@dataclass
class RunOptions:
    run_dir: Path | None = None
    limit: int | None = None
    progress: bool | None = None  # None: live display on a terminal, plain lines otherwise
    progress_interval_s: float = 10.0
    on_start: Callable[["Run"], None] | None = None  # e.g. to install signal handlers
    cache: bool = True  # replay answers already paid for; off: ask again
    force: bool = False  # resume even if the config changed answers
    state_interval_s: float = 2.0
    tune_gc: bool = True  # fewer collector passes while the run lasts (engine/runs/gc_tuning.py)


def make_backend(name: str, config: BackendConfig) -> Backend:
    if config.kind == "vllm-inproc":
        from gristmill.backends.vllm.inproc import VLLMInProcBackend  # vLLM only when used

        return VLLMInProcBackend(name, config)
    if config.batch is not None:
        from gristmill.backends.micro_batch import CompletionBatcher

        return CompletionBatcher(OpenAIHTTPBackend(name, config), config.batch)
    return OpenAIHTTPBackend(name, config)


def make_client(name: str, config: BackendConfig) -> ModelClient:
    pool = PermitPool(config.max_in_flight, rpm=config.rpm, tpm=config.tpm,
                      window_s=config.rate_window_s)
    backend = make_backend(name, config)
    client = ModelClient(backend, pool,
                         policy=RetryPolicy(config.retry.max_attempts, config.retry.base_s,
                                            config.retry.max_s, config.retry.malformed_retries),
                         aimd=AIMD(config.max_in_flight) if config.adaptive else None,
                         count_tokens=counter_for(str(config.tokenizer) if config.tokenizer else None),
                         default_max_tokens=config.default_max_tokens,
                         rng=random.Random())
    http = getattr(backend, "inner", backend)  # a batcher wraps the HTTP backend
    if isinstance(http, OpenAIHTTPBackend):
        http.on_rate_hints = client.on_rate_hints
    return client


def make_fleets(config: PipelineConfig, log_dir: Path) -> dict[str, Any]:
    """The (not yet started) `vllm serve` fleets of the kind: vllm backends."""
    if not any(b.kind == "vllm" for b in config.backends.values()):
        return {}
    from gristmill.backends.vllm.fleet import VLLMFleet

    return {name: VLLMFleet.from_config(name, b, log_dir=log_dir)
            for name, b in config.backends.items() if b.kind == "vllm"}


class Run:
    """One run of a pipeline; `stats`, `pipeline` and `clients` are live while it runs."""

    def __init__(self, config: PipelineConfig, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.dir = RunDir(options.run_dir or default_run_dir(config.name))
        if self.dir.resuming:
            self.dir.check_resume(config, options.force)
        self.store: Store | None = None  # opened by execute()
        self.session_started = time.time()  # tells resumed sessions apart in timeline.jsonl
        self.dedup: dict[str, int] | None = None  # dataset.jsonl stats, at the end
        self.fleets = make_fleets(config, self.dir.path / "logs")
        self.backend_configs = {  # a fleet's URLs are known now: its ports are picked
            name: b.model_copy(update={"base_urls": self.fleets[name].base_urls})
            if name in self.fleets else b for name, b in config.backends.items()}
        self.clients = {name: make_client(name, b) for name, b in self.backend_configs.items()}
        first = next(iter(config.backends.values()))
        self.source = SeedSource(config.seeds, count=counter_for(
            str(first.tokenizer) if first.tokenizer else None))
        if config.agentinstruct is not None:
            self._build_flow(config)
        else:
            self._build_stages(config)
        self.judge = self._build_judge(config) if config.judge and config.judge.enabled else None
        self.pipeline = Pipeline(self.stages, self._emit)

    def _build_stages(self, config: PipelineConfig) -> None:
        self.stats = RunStats([StageStats(s.name) for s in config.stages],
                              seeds_expected=self.options.limit,
                              first_fan_out=config.stages[0].fan_out)
        self.stages = [
            TemplateStage(s, depth, self.clients[s.backend],
                          s.model or config.backends[s.backend].model,
                          config.backends[s.backend].api, self.stats.stages[depth], self._reject,
                          StageValidation(s.validators, s.name, self.stats.validation,
                                          config._base_dir))
            for depth, s in enumerate(config.stages)]
        self._make_record = template_record(config)

    def _build_flow(self, config: PipelineConfig) -> None:
        from gristmill.flows.agentinstruct import Flow, build_stages, make_record, stage_names

        assert config.agentinstruct is not None
        flow = Flow(config.agentinstruct)
        self.stats = RunStats([StageStats(n) for n in stage_names(config.agentinstruct)],
                              seeds_expected=self.options.limit)
        by_name = {s.name: s for s in self.stats.stages}
        self.stages = build_stages(config, flow, self.clients, by_name.__getitem__, self._reject,
                                   self.stats.validation)
        self._make_record = make_record(flow)

    def _build_judge(self, config: PipelineConfig) -> Any:
        """The judge after the last stage; it sees each record as it will be written."""
        from gristmill.flywheel.judge_stage import JudgeStage, with_verdict
        from gristmill.flywheel.runrecords import judge_pool

        judge = config.judge
        assert judge is not None
        backend = config.backends[judge.backend]
        stats = StageStats("judge")
        self.stats.stages.append(stats)
        stage = JudgeStage(judge, len(self.stages), self.clients[judge.backend],
                           judge.model or backend.model, backend.api, stats, self._reject,
                           self.stats.validation, self._make_record,
                           judge_pool(judge, self.dir.path))
        self.stages.append(stage)
        self._make_record = with_verdict(self._make_record)
        return stage

    def seeds(self) -> Iterator[Item]:
        seeds = itertools.islice(self.source, self.options.limit) if self.options.limit \
            else iter(self.source)
        for index, seed in enumerate(seeds):
            self.store.put_seed(seed.id, seed.source, seed.text)  # the review page shows them
            yield Item(seed.id, seed.id, {"seed": seed.text, "kind": seed.kind,
                                          "language": seed.language, "seed_index": index},
                       [(seed.id, "seed")])

    def _admit(self) -> None:
        self.stats.seeds_admitted += 1

    def _emit(self, item: Item) -> None:
        if self._first_time("output", item.id):
            record = self._make_record(item)
            self.store.append("output", record)
            self.stats.count_record(record)

    def _reject(self, record: dict[str, Any]) -> None:
        if self._first_time("rejects", record["id"]):
            self.store.append("rejects", record)
            reason = record.get("validator") or record.get("error") or "unknown"
            self.stats.rejects[f"{record['stage']}: {reason}"] += 1

    def _first_time(self, sink: str, record_id: str) -> bool:
        """False for ids an earlier session of the run wrote: nothing is written twice. Ids
        written in this session are not remembered: an id is a hash of the seed's place and
        the path that made the item, so a session makes each at most once, and memory stays
        flat however many records a run writes."""
        written = self.store.written(sink)
        if written and id_key(record_id) in written:  # a fresh run has none: no key to make
            self.stats.already_written += 1
            return False
        return True

    def _open_store(self) -> None:
        path = self.dir.path
        self.store = Store(path / "run.sqlite", {"output": path / "output.jsonl",
                                                 "rejects": path / "rejects.jsonl"})
        self.stats.resumed_records = len(self.store.written("output"))
        if self.options.cache:
            for name, client in self.clients.items():
                client.cache = AnswerCache(self.store, name)

    def state(self, status: str) -> dict[str, Any]:
        return {"status": status, "pid": os.getpid(), "updated": time.time(),
                "run_dir": str(self.dir.path), "seeds_admitted": self.stats.seeds_admitted,
                "records": self.stats.resumed_records + self.stats.records,
                "rejects": sum(self.stats.rejects.values()), "elapsed_s": self.stats.elapsed,
                "stages": [s.as_dict() for s in self.stats.stages],
                "cache": self.cache_stats()}

    def cache_stats(self) -> dict[str, int]:
        caches = [c.cache for c in self.clients.values() if c.cache is not None]
        return {"hits": sum(c.hits for c in caches), "misses": sum(c.misses for c in caches)}

    def _write_state(self, status: str) -> None:
        """state.json, and a line of timeline.jsonl (the report's throughput over time; a
        resumed run appends its own session)."""
        state = self.state(status)
        self.dir.write_state(state)
        point = {"t": state["updated"], "session": self.session_started, "status": status,
                 "elapsed_s": round(state["elapsed_s"], 3), "seeds": state["seeds_admitted"],
                 "records": state["records"], "rejects": state["rejects"],
                 "tokens": self.stats.tokens}
        with (self.dir.path / "timeline.jsonl").open("ab") as fh:
            fh.write(orjson.dumps(point) + b"\n")

    async def _keep_state(self, done: asyncio.Event) -> None:
        while not done.is_set():
            self._write_state("running")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.state_interval_s):
                    await done.wait()

    async def execute(self) -> dict[str, Any]:
        with tuned_gc() if self.options.tune_gc else contextlib.nullcontext():
            return await self._execute()

    async def _execute(self) -> dict[str, Any]:
        fresh = not self.dir.resuming or self.options.force
        if fresh:
            self.dir.write_config(self.config)
        self._open_store()
        done = asyncio.Event()
        status = "interrupted"
        try:
            async with contextlib.AsyncExitStack() as fleets, asyncio.TaskGroup() as group:
                if fresh or not self.dir.has_manifest:
                    group.create_task(asyncio.to_thread(self.dir.write_manifest, self.config))
                for fleet in self.fleets.values():  # stopped after the pipeline, or on error
                    await fleets.enter_async_context(fleet)
                group.create_task(self._keep_state(done))
                if self.options.progress is not False:
                    from gristmill.runs.progress import show_progress  # rich: only for a display

                    group.create_task(show_progress(self, done, self.options.progress,
                                                    self.options.progress_interval_s))
                self._watch_backends(group, done)
                try:
                    await self.pipeline.run(self.seeds(), self._admit)
                    await self.store.flush()
                    status = "finished" if not self.pipeline.stopped else "stopped"
                    if status == "finished" and self.config.dedup.enabled:
                        from gristmill.dataset.dedup import (dedup_run)  # numpy and datasketch: only when used

                        self.dedup = await asyncio.to_thread(
                            dedup_run, self.dir.path, self.config.dedup.threshold)
                finally:
                    done.set()
        finally:
            await self._close(status)
        return self.summary()

    def _watch_backends(self, group: asyncio.TaskGroup, done: asyncio.Event) -> None:
        """Per backend, until `done`: probe ejected endpoints, restart dead fleet servers,
        set per-endpoint caps from /metrics."""
        for name, backend in self.backend_configs.items():
            endpoints = getattr(self.clients[name].backend, "endpoints", None)
            if endpoints is None:
                continue  # a backend without HTTP endpoints
            group.create_task(endpoints.probe_ejected(done))
            if name in self.fleets:
                endpoints.down_wait_s = self.fleets[name].startup_timeout_s
                group.create_task(self.fleets[name].supervise(endpoints, done))
            if backend.metrics:
                from gristmill.runs.metrics_poller import poll_metrics

                group.create_task(poll_metrics(self.clients[name], endpoints,
                                               backend.metrics_interval_s,
                                               backend.max_in_flight, done))

    async def _close(self, status: str) -> None:
        """Flush and close everything, also after an error or a cancel (shielded: a second
        cancel must not leave the store's writer half done). The connections close while the
        store's writer makes its last commit: one is the loop's work, the other the disk's."""
        self.stats.finished = time.monotonic()
        closing = [asyncio.to_thread(self.store.close)] if self.store is not None else []
        closing += [client.aclose() for client in self.clients.values()]  # the thread first
        results = await asyncio.shield(asyncio.gather(*closing, return_exceptions=True))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._write_state(status)
        self.dir.write_summary(self.summary())
        self.dir.close()

    def summary(self) -> dict[str, Any]:
        summary = self.stats.summary()
        summary["run_dir"] = str(self.dir.path)
        summary["records_total"] = self.stats.resumed_records + self.stats.records
        summary["cache"] = self.cache_stats()
        if self.dedup is not None:
            summary["dedup"] = self.dedup
        if self.judge is not None:
            summary["judge"] = self.judge.counts.as_dict()
        summary["seed_input"] = self.source.report.summary()
        summary["backends"] = {
            name: {"requests": c.requests, "retries": c.retries, "errors": dict(c.errors),
                   "prompt_tokens": c.usage.prompt_tokens,
                   "completion_tokens": c.usage.completion_tokens}
            for name, c in self.clients.items()}
        for name, fleet in self.fleets.items():
            summary["backends"][name]["servers"] = {
                "urls": fleet.base_urls, "restarts": sum(fleet.restarts),
                "given_up": sorted(fleet.given_up)}
        return summary


async def run(config: PipelineConfig, options: RunOptions | None = None) -> dict[str, Any]:
    """Run a pipeline to the end and return its summary (also written to summary.json)."""
    the_run = Run(config, options or RunOptions())
    if the_run.options.on_start:
        the_run.options.on_start(the_run)
    return await the_run.execute()


def run_sync(config: PipelineConfig, options: RunOptions | None = None) -> dict[str, Any]:
    """`run` for synchronous callers; inside a running loop (a notebook) it runs on a thread."""
    from gristmill.runs.event_loop import new_event_loop

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
