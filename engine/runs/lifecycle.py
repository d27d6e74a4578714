"""One run of a pipeline, start to end: open the run directory and its store, start the fleets,
run the pipeline with its background watchers, close everything and write the summary, after
success, an error or a cancel alike."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any, AsyncIterator, Coroutine, Iterable, Iterator

from gristmill.config.pipeline import PipelineConfig
from gristmill.errors import BudgetReached, ConfigError, RunStopped
from gristmill.dataset.cache import AnswerCache
from gristmill.dataset.files import read_json, write_atomic
from gristmill.dataset.sink import id_key
from gristmill.dataset.store import Store
from gristmill.flows.items import Item
from gristmill.flows.sampling import choice_index
from gristmill.seeds import SeedSource
from gristmill.seeds.presplit import PresplitSource
from gristmill.seeds.report import Seed
from gristmill.seeds.shards import in_shard
from gristmill.flows.pipeline import Pipeline
from gristmill.runs import state
from gristmill.runs.assembly import assemble, seed_source
from gristmill.runs.gc_tuning import tuned_gc
from gristmill.runs.options import (RunOptions, kept_settings, metrics_served,
                                   with_kept_settings)
from gristmill.runs.outcome import Outcome, first_leaf
from gristmill.runs.retrieval import open_index
from gristmill.runs.rundir import RunDir, default_run_dir
from gristmill.runs.spend import budget_usd, open_spend
from gristmill.scheduling.budget import Budget
from gristmill.runs.target import make_target


@contextlib.asynccontextmanager
async def background(work: Iterable[Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run `work` while the body runs and cancel it as a group when the body ends. Work that
    fails (a fleet with no server left) cancels the body and its error is raised."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(w) for w in work]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()


class Run:
    """One run of a pipeline; `stats`, `pipeline` and `clients` are live while it runs."""

    def __init__(self, config: PipelineConfig, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.dir = RunDir(options.run_dir or default_run_dir(config.name))
        self.choices = self.dir.choice_rule()  # read before a --force resume rewrites it
        if self.dir.resuming:
            self.dir.check_resume(config, options.force)
            options = self.options = with_kept_settings(options, self.dir.read_settings())
        self.store: Store | None = None  # opened by execute()
        self.session_started = time.time()  # tells resumed sessions apart in timeline.jsonl
        self.dedup: dict[str, int] | None = None  # dataset.jsonl stats, at the end
        self.outcome: Outcome | None = None  # set when the run ends
        self._stop_reason: str | None = None  # why admission stopped early, if it did
        self.budget: Budget | None = None  # with a budget, once the store is open
        self.spent_before = 0.0  # USD earlier sessions spent (runs/spend.py)
        self.index = open_index(config, self.dir.path, seed_source(config),
                                resuming=self.dir.resuming, force=options.force,
                                built=options.retrieval_dir)  # before stages that search it
        parts = assemble(config, self.dir.path, options.limit, self._reject, self.index)
        self.clients, self.stats = parts.clients, parts.stats
        self.source: SeedSource | PresplitSource = parts.source if options.presplit is None \
            else PresplitSource(options.presplit)
        self.judge, self._make_record, self._first_item = (parts.judge, parts.make_record,
                                                           parts.first_item)
        target = options.target_records
        self.target = make_target(config.target_records if target is None else target,
                                  config.dedup)
        self._batches = batches = [c.backend.capabilities.batches for c in self.clients.values()
                                   if c.backend.capabilities.batches is not None]
        if batches and not options.cache:
            raise ConfigError("mode: batch needs the answer cache: an answer is taken when its "
                              "item is asked again; remove --no-cache")
        self.pipeline = Pipeline(parts.stages, self._emit,
                                 None if self.target is None else self._seed_done,
                                 parking=self.dir.path / "batches" / "parked.sqlite",
                                 on_quiet=self._flush_batches if batches else None)
        for hooks in batches:
            hooks.tell(self.pipeline.answered)
        budget_usd(self)  # an unpriced model under a budget: a config error, before any work

    def _flush_batches(self) -> None:
        """Nothing more can come until answers do: batch files go now, not after a timer."""
        for batches in self._batches:
            batches.flush()

    # -- items in, records out --------------------------------------------------------------
    def seeds(self) -> Iterator[Item]:
        seeds: Iterator[Seed] = iter(self.source)
        if self.options.shard is not None and self.options.presplit is None:  # its part
            seeds = in_shard(seeds, *self.options.shard)
        if self.options.limit:
            seeds = itertools.islice(seeds, self.options.limit)
        for index, seed in enumerate(seeds):
            self.store.put_seed(seed.id, seed.source, seed.text)  # the review page shows them
            if self.target is not None:
                self.target.admitted(seed.id, index)
            yield self._first_item(seed, choice_index(self.choices, seed.id, index))

    def stop_admitting(self, reason: str) -> None:
        """Read no more seeds (a signal, the target reached): started work runs to its end,
        and `reason` is the run's stop reason."""
        self._stop_reason = self._stop_reason or reason
        self.pipeline.stop_admitting()

    def _admit(self) -> None:
        self.stats.seeds_admitted += 1

    def _emit(self, item: Item) -> None:
        new = self._first_time("output", item.id)
        if not new and self.target is None:
            return
        record = self._make_record(item)
        if new:
            self.store.append("output", record)
            self.stats.count_record(record)
        if self.target is not None:  # an earlier session's record counts too: a resume
            self.target.record(item.seed_id, record)  # replays every seed from the first

    def _seed_done(self, seed_id: str) -> None:
        if self.target is not None and self.target.seed_done(seed_id):
            self.stop_admitting("target")

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

    # -- start, run, end --------------------------------------------------------------------
    def _open_store(self) -> None:
        path = self.dir.path
        self.store = Store(path / "run.sqlite", {"output": path / "output.jsonl",
                                                 "rejects": path / "rejects.jsonl"},
                           wal=not self.options.shared_storage)
        self.stats.resumed_records = len(self.store.written("output"))
        if self.stats.resumed_records:  # per-skill counts go on from the last state written
            earlier = read_json(path / "state.json") or {}
            self.stats.covered_before = earlier.get("coverage") or {}
        if self.options.cache:
            for client in self.clients.values():  # a backend's twins share its answers
                client.cache = AnswerCache(self.store, client.backend.name)
        for client in self.clients.values():
            if (take := client.backend.capabilities.set_commit_barrier) is not None:
                take(self.store.flush)
        open_spend(self)

    async def execute(self) -> dict[str, Any]:
        async with self._metrics_served():  # first: the GC tuning freezes what it imports
            with tuned_gc() if self.options.tune_gc else contextlib.nullcontext():
                return await self._execute()

    def _metrics_served(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Prometheus /metrics (--metrics-port) until the summary is written, and lingering."""
        def collector() -> Any:
            from gristmill.runs.prometheus import RunCollector

            return RunCollector(self)
        return metrics_served(self.options, collector)

    async def _execute(self) -> dict[str, Any]:
        fresh = not self.dir.resuming or self.options.force
        if fresh:
            self.dir.write_config(self.config)
        self.dir.write_settings(kept_settings(self.options))
        self._open_store()
        stopped: RunStopped | None = None
        try:
            try:
                await self._run_pipeline(fresh)
            except* RunStopped as group:  # from TaskGroups: the first one says why
                stopped = first_leaf(group)
            if stopped is None and self.budget is not None and self.budget.closed:
                stopped = BudgetReached(self.budget.reached())  # the rest ran to its end
        except BaseException as error:
            cancelled = isinstance(error, asyncio.CancelledError)
            self.outcome = Outcome(self._stop_reason or "cancelled") if cancelled \
                else Outcome.of_error(error)
            await self._close()
            raise
        self.outcome = Outcome.of_error(stopped) if stopped is not None else \
            Outcome(self._stop_reason or self._ran_out())
        await self._close()
        if stopped is not None:
            raise stopped
        return state.summary(self)

    async def _preflight(self) -> None:
        """Before the first seed is read: each backend that can, asks its server whether the
        key works and the models exist (FatalUpstream if not)."""
        wanted = self.config.models_by_backend()
        for name, client in self.clients.items():
            if (preflight := client.backend.capabilities.preflight) is not None and name in wanted:
                await preflight(wanted[name])

    def _ran_out(self) -> str:
        limit = self.options.limit
        return "limit" if limit and self.stats.seeds_admitted >= limit else "complete"

    def _watchers(self) -> Iterator[Coroutine[Any, Any, None]]:
        """What runs beside the pipeline: state.json, the progress display, and per backend
        what its capabilities ask for: probing ejected endpoints, supervising its fleet,
        per-endpoint caps from /metrics."""
        yield state.keep_state(self, self.options.state_interval_s)
        if self.options.metrics_file is not None:  # a cluster's shard, for its driver
            from gristmill.runs.prometheus import keep_metrics_file

            yield keep_metrics_file(self, self.options.metrics_file,
                                    self.options.state_interval_s)
        if self.options.progress is not False:
            from gristmill.runs.progress import show_progress  # rich: only for a display

            yield show_progress(self, self.options.progress, self.options.progress_interval_s)
        for name, client in self.clients.items():
            caps = client.backend.capabilities
            if caps.background is not None:
                yield caps.background()
            if caps.endpoints is None:
                continue
            yield caps.endpoints.probe_ejected()
            if caps.fleet is not None:
                caps.endpoints.down_wait_s = caps.fleet.startup_timeout_s
                yield caps.fleet.supervise(caps.endpoints)
            if caps.scrape_metrics_s is not None:
                from gristmill.runs.metrics_poller import poll_metrics

                yield poll_metrics(client, caps.endpoints, caps.scrape_metrics_s,
                                   self.config.backends[name].max_in_flight)

    async def _run_pipeline(self, fresh: bool) -> None:
        async with contextlib.AsyncExitStack() as fleets, asyncio.TaskGroup() as group:
            if fresh or not self.dir.has_manifest:
                group.create_task(asyncio.to_thread(
                    self.dir.write_manifest, self.config, self.choices,
                    self.index.info if self.index is not None else None))
            for client in self.clients.values():  # stopped after the pipeline, or on error
                if (fleet := client.backend.capabilities.fleet) is not None:
                    await fleets.enter_async_context(fleet)
            await self._preflight()
            async with background(self._watchers()):
                await self.pipeline.run(self.seeds(), self._admit)
                for client in self.clients.values():
                    if (drain := client.backend.capabilities.drain) is not None:
                        await drain(not self.pipeline.stopped)
            await self.store.flush()
            if self.target is not None:  # its own dataset: N records, dedup in seed order
                if self._stop_reason in (None, "target"):  # not after a signal
                    self.dedup = await asyncio.to_thread(self.target.finish, self.dir.path)
            elif not self.pipeline.stopped and self.config.dedup.enabled:
                from gristmill.dataset.dedup import dedup_run  # numpy, datasketch: if used

                self.dedup = await asyncio.to_thread(
                    dedup_run, self.dir.path, self.config.dedup.threshold)

    async def _close(self) -> None:
        """Flush and close everything, also after an error or a cancel (shielded: a second
        cancel must not leave the store's writer half done). The connections close while the
        store's writer makes its last commit: one is the loop's work, the other the disk's.
        The state, the summary and the directory's closing happen even when a close fails;
        then the failure is raised."""
        self.stats.finished = time.monotonic()
        closing = [asyncio.to_thread(self.store.close)] if self.store is not None else []
        closing += [client.aclose() for client in self.clients.values()]  # the thread first
        results = await asyncio.shield(asyncio.gather(*closing, return_exceptions=True))
        try:
            state.write_state(self, self.outcome.status)
            if self.options.metrics_file is not None:  # the shard's last figures
                from gristmill.runs.prometheus import metrics_text

                write_atomic(self.options.metrics_file, metrics_text(self))
            self.dir.write_summary(state.summary(self))
        finally:
            self.dir.close()
        for result in results:
            if isinstance(result, BaseException):
                raise result
