"""A run over a Ray cluster, as its driver sees it (`gristmill run --ray`).

The seeds fall into a fixed number of shards (by their text's digest, seeds/shards.py). At
most `workers` shards run at once, each an unchanged gristmill run inside a named Ray actor,
in its own directory RUN/shards/<k>/ (store, cache, outputs) under its lease; a worker slot
takes the next shard when one ends. A worker or node that is lost makes its shard run again
on a new actor, resuming from the shard's own store: nothing paid for is asked again, nothing
written twice. At the end the shards' files are merged into the run's, near-duplicates are
removed across them, and one summary adds them up. The driver keeps what a single process
keeps: the config, the manifest, the stop reason and the exit code; `gristmill resume RUN`
goes back to Ray with the recorded shard count."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from gristmill.cluster.fleets import cluster_fleets, served_by
from gristmill.cluster.limits import divided
from gristmill.cluster.merge import merge_seeds, merge_shards, merged_summary
from gristmill.cluster.progress import cluster_state, keep_cluster_state
from gristmill.cluster.split import SPLIT_FILE, split_input
from gristmill.cluster.target import choose, first_limit, next_limit
from gristmill.cluster.storage import check_shared
from gristmill.cluster.worker import ShardWorker
from gristmill.config.pipeline import PipelineConfig
from gristmill.dataset.files import read_json, write_atomic
from gristmill.errors import ConfigError, RunStopped
from gristmill.runs.lifecycle import background
from gristmill.runs.options import (RunOptions, kept_settings, metrics_served,
                                   with_kept_settings)
from gristmill.runs.assembly import seed_source
from gristmill.runs.outcome import Outcome, first_leaf
from gristmill.runs.retrieval import RETRIEVAL_DIR, open_index
from gristmill.runs.state import process_cpu_s
from gristmill.runs.target import Target
from gristmill.runs.rundir import RunDir, default_run_dir

CLUSTER_FILE = "cluster.json"  # the executor and the fixed shard count, for every resume
LOSSES_IN_A_ROW = 5  # workers a shard may lose one after another before the run gives up
NAMESPACE = "gristmill"


def recorded(run_dir: Path) -> dict[str, Any] | None:
    """What RUN/cluster.json says, if the run is a cluster's."""
    return read_json(run_dir / CLUSTER_FILE)


def refuse_unsupported(config: PipelineConfig, options: RunOptions) -> None:
    """What a cluster run does not divide among its shards yet: a config error, not a guess."""
    asks = {"--budget-usd / budget_usd": options.budget_usd or config.budget_usd,
            "mode: batch": any(b.mode == "batch" for _, b in config.client_configs().values()),
            "kind: vllm-inproc (each shard would load its own model)": any(
                b.kind == "vllm-inproc" for b in config.backends.values())}
    named = [name for name, value in asks.items() if value]
    if named:
        raise ConfigError(f"{', '.join(named)}: not supported with --ray yet (the driver does "
                          "not divide it among the shards); run without --ray, or without it")


class ClusterRun:
    def __init__(self, config: PipelineConfig, options: RunOptions, address: str | None = None,
                 shards: int | None = None, workers: int | None = None,
                 say: Any = None) -> None:
        refuse_unsupported(config, options)
        self.config, self.options = config, options
        self.dir = RunDir(options.run_dir or default_run_dir(config.name))
        if self.dir.resuming:
            self.dir.check_resume(config, options.force)
            options = self.options = with_kept_settings(options, self.dir.read_settings())
        # the index over every seed, built here once; each shard loads it (memory-mapped)
        index = open_index(config, self.dir.path, seed_source(config),
                           resuming=self.dir.resuming, force=options.force)
        self.retrieval = None if index is None else index.info
        before = recorded(self.dir.path) or {}
        self.token = before.get("token") or secrets.token_hex(6)
        self.shards = before.get("shards") or shards or config.cluster.shards
        self.address = address or before.get("address") or config.cluster.address
        self.workers = workers or config.cluster.workers
        self.choices = self.dir.choice_rule()
        self.say = say or (lambda text: print(text, file=sys.stderr))
        self.outcome: Outcome | None = None
        self.summaries: dict[int, dict[str, Any]] = {}
        self.restarts = 0  # shards run again after their worker was lost
        self._stop_reason: str | None = None
        self.live: dict[int, Any] = {}  # shard -> its actor, while it runs
        self.started = time.monotonic()
        self.placed: dict[int, str] = {}  # shard -> the node its (last) worker ran on
        self.split: dict[str, Any] = {}  # how the input was read into the shards' files
        self.fleets: dict[str, list[str]] = {}  # the servers started on the cluster, by backend
        self.target_n = options.target_records if options.target_records is not None \
            else config.target_records
        self.target: Target | None = None  # with a target: what the records so far give

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def shard_dir(self, shard: int) -> Path:
        return self.dir.path / "shards" / f"{shard:05d}"

    def stop_admitting(self, reason: str) -> None:
        """A signal: every live shard admits no more seeds and finishes what it started; no
        new shard starts."""
        self._stop_reason = self._stop_reason or reason
        for actor in self.live.values():
            actor.stop.remote(reason)

    # -- start, run, end --------------------------------------------------------------------
    async def execute(self) -> dict[str, Any]:
        import ray

        self.started = time.monotonic()
        ours = self._connect(ray)
        try:
            async with self._metrics_served():
                return await self._execute(ray)
        finally:
            self.dir.close()
            if ours:
                ray.shutdown()

    async def _execute(self, ray: Any) -> dict[str, Any]:
        fresh = not self.dir.resuming or self.options.force
        if fresh:
            self.dir.write_config(self.config)
        write_atomic(self.dir.path / CLUSTER_FILE, orjson.dumps(
            {"executor": "ray", "shards": self.shards, "address": self.address,
             "token": self.token}))
        self.dir.write_settings(kept_settings(self.options))  # --limit, --metrics-port...
        if fresh or not self.dir.has_manifest:
            await asyncio.to_thread(self.dir.write_manifest, self.config, self.choices,
                                    self.retrieval)
        await check_shared(ray, self.dir.path / CLUSTER_FILE, self.token)
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)
                                             // self.config.cluster.cpus_per_worker))
        workers = min(workers, self.shards)
        options = self.options
        every = None if options.progress is False else options.progress_interval_s
        stopped: RunStopped | None = None
        try:
            try:
                async with cluster_fleets(ray, self.config, self.dir.path / "logs",
                                          self.say) as (urls, supervision):
                    self.fleets = urls
                    data = served_by(self.config.model_dump(mode="json"), urls)
                    watchers = [keep_cluster_state(self, options.state_interval_s, every,
                                                   self.say), *map(_awaited, supervision)]
                    async with background(watchers):
                        await self._rounds(ray, workers, data, fresh)
            except* RunStopped as group:
                stopped = _unwrapped(first_leaf(group))
        except BaseException as error:
            cancelled = isinstance(error, asyncio.CancelledError)
            self.outcome = Outcome(self._stop_reason or "cancelled") if cancelled \
                else Outcome.of_error(error)
            self._finish(merge=False)
            raise
        self.outcome = Outcome.of_error(stopped) if stopped is not None else \
            Outcome(self._stop_reason or self._ran_out())
        summary = await asyncio.to_thread(self._finish, True)
        if stopped is not None:
            raise stopped
        return summary

    async def _rounds(self, ray: Any, workers: int, config: dict[str, Any], fresh: bool) -> None:
        """Split the input, run the shards that have seeds to go; with a target, again with
        more seeds until the first N records in input order are there (cluster/target.py).
        The backends' limits are divided among the shards that run at once."""
        shard_dirs = [self.shard_dir(k) for k in range(self.shards)]
        limit = self.options.limit
        if self.target_n:
            before = read_json(self.dir.path / "shards" / SPLIT_FILE)
            limit = before["limit"] if before and before.get("limit") and not fresh \
                else first_limit(self.target_n)
            limit = min(limit, self.options.limit or limit)
        while True:
            self.split = await asyncio.to_thread(split_input, self.config, shard_dirs, fresh,
                                                 limit)
            fresh = False
            pending = deque(k for k in range(self.shards) if not self._finished(k))
            self.say(f"cluster: {self.split['seeds']:,} seeds in {self.shards} shards, "
                     f"{len(pending)} to run, {workers} at once")
            at_once = min(workers, len(pending))
            data = divided(config, max(1, at_once))
            async with asyncio.TaskGroup() as group:
                for _ in range(at_once):
                    group.create_task(self._slot(ray, pending, data))
            if not self.target_n or self._stop_reason is not None:
                return
            self.target = await asyncio.to_thread(choose, self.config, shard_dirs,
                                                  self.target_n)
            assert limit is not None
            if self.target.reached or self.split["seeds"] < limit or limit == self.options.limit:
                return
            limit = min(next_limit(self.target_n, limit, len(self.target.chosen)),
                        self.options.limit or 10**12)
            self.say(f"cluster: {len(self.target.chosen):,} of {self.target_n:,} records "
                     f"kept so far; taking the first {limit:,} seeds")

    def _ran_out(self) -> str:
        if self.target is not None and self.target.reached:
            return "target"
        limit = self.options.limit
        return "limit" if limit and self.split["seeds"] >= limit else "complete"

    def _metrics_served(self) -> contextlib.AbstractAsyncContextManager[None]:
        """/metrics (--metrics-port): the shards' added up, served by the driver."""
        def collector() -> Any:
            from gristmill.cluster.prometheus import ClusterCollector

            return ClusterCollector(self)
        return metrics_served(self.options, collector)

    def _connect(self, ray: Any) -> bool:
        """Join the cluster at `address`, or start a local Ray for the run (True: ours)."""
        if ray.is_initialized():
            return False
        quiet = {"namespace": NAMESPACE, "log_to_driver": False}
        if self.address:
            ray.init(address=self.address, **quiet)
        else:  # a small object store: shards exchange summaries, not data
            ray.init(include_dashboard=False, object_store_memory=128 * 1024 * 1024, **quiet)
        return not self.address

    def _finished(self, shard: int) -> bool:
        """A shard whose run completed in an earlier session over the seeds it has now (a
        higher --limit gives it more): its summary is reused."""
        summary = read_json(self.shard_dir(shard) / "summary.json")
        if summary is not None and summary.get("stop_reason") == "complete" and \
                summary.get("seeds") == self.split["per_shard"][shard]:
            self.summaries[shard] = summary
            return True
        return False

    async def _slot(self, ray: Any, pending: deque[int], data: dict[str, Any]) -> None:
        """One worker slot: shard after shard until none is left (or a signal came)."""
        while pending and self._stop_reason is None:
            shard = pending.popleft()
            summary = await self._run_shard(ray, shard, data)
            if summary is not None:
                self.summaries[shard] = summary

    async def _run_shard(self, ray: Any, shard: int,
                         data: dict[str, Any]) -> dict[str, Any] | None:
        """The shard's summary; None when a signal came before it could start again."""
        worker = ray.remote(num_cpus=self.config.cluster.cpus_per_worker)(ShardWorker)
        for losses in range(1, LOSSES_IN_A_ROW + 1):
            actor = worker.options(name=f"gristmill-{self.token}-{shard:05d}",
                                   namespace=NAMESPACE).remote()
            self.live[shard] = actor
            try:
                if self._stop_reason is not None:  # a signal while it was starting
                    actor.stop.remote(self._stop_reason)
                self.placed[shard] = await actor.node.remote()
                return await actor.execute.remote(data, shard, self.shards,
                                                  str(self.shard_dir(shard)),
                                                  self.options.cache, self.options.force,
                                                  bool(self.options.metrics_port),
                                                  self._retrieval_dir())
            except ray.exceptions.RayActorError as lost:  # its process or node is gone
                if losses == LOSSES_IN_A_ROW:
                    raise
                if self._stop_reason is not None:  # stopping: resume runs it again
                    return read_json(self.shard_dir(shard) / "summary.json")
                self.restarts += 1
                self.say(f"cluster: shard {shard} lost its worker ({type(lost).__name__}); "
                         "resuming it on a new one")
            finally:
                del self.live[shard]
                ray.kill(actor, no_restart=True)  # an actor that ended holds a CPU till then
        raise AssertionError("unreachable")

    def _retrieval_dir(self) -> str | None:
        return None if self.retrieval is None else str(self.dir.path / RETRIEVAL_DIR)

    def _finish(self, merge: bool) -> dict[str, Any]:
        """Merge the shards (after every end but a cancel), write the summary and state."""
        summary: dict[str, Any] = {}
        shard_dirs = [self.shard_dir(k) for k in range(self.shards)]
        if merge:
            shards = merge_shards(self.dir.path, shard_dirs)
            merge_seeds(self.dir.path, shard_dirs)
            summary = merged_summary([self.summaries[k] for k in sorted(self.summaries)],
                                     self.elapsed)
            summary["shards"] = shards
            summary["seed_input"] = self.split.get("input")  # read once, by the driver
            self._record_in_manifest(shards)
            if self.target is not None:  # its own dataset: the first N in input order
                summary["target"] = self.target.summary()
                summary["dedup"] = self.target.finish(self.dir.path)
            elif self.outcome is not None and self.outcome.stop_reason in ("complete", "limit") \
                    and self.config.dedup.enabled:
                from gristmill.dataset.dedup import dedup_run  # numpy, datasketch: if used

                summary["dedup"] = dedup_run(self.dir.path, self.config.dedup.threshold)
        summary.update(run_dir=str(self.dir.path), driver_cpu_s=process_cpu_s(), cluster={
            "shards": self.shards, "shards_done": sum(
                1 for s in self.summaries.values() if s.get("stop_reason") == "complete"),
            "worker_restarts": self.restarts, "address": self.address,
            "nodes": {str(k): node for k, node in sorted(self.placed.items())},
            "fleets": self.fleets})
        if self.outcome is not None:
            summary.update(self.outcome.as_dict())
        self.dir.write_state(cluster_state(self, summary.get("status", "stopped")))
        self.dir.write_summary(summary)
        return summary

    def _record_in_manifest(self, shards: list[dict[str, Any]]) -> None:
        """Each shard's merged line counts and checksums, beside what the run started with."""
        manifest = read_json(self.dir.path / "manifest.json") or {}
        manifest["merged"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "shards": shards}
        write_atomic(self.dir.path / "manifest.json",
                     orjson.dumps(manifest, option=orjson.OPT_INDENT_2))


async def _awaited(ref: Any) -> None:
    """A server's supervision: returns only when cancelled, raises when it gives up."""
    await ref


def _unwrapped(error: BaseException) -> RunStopped:
    """A shard's RunStopped as raised there (Ray wraps it with the remote traceback)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, RunStopped) else error  # type: ignore[return-value]
