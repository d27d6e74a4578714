"""A shard's engine inside a Ray actor: an unchanged gristmill run over the seeds of one shard,
in the shard's own directory, holding the shard's lease. The actor installs no signal
handlers: the driver stops it (`stop`), or kills it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gristmill.cluster.lease import Lease
from gristmill.cluster.split import seeds_file
from gristmill.config.load import validate_config
from gristmill.runs.lifecycle import Run
from gristmill.runs.options import RunOptions


METRICS_FILE = "metrics.prom"  # a shard's Prometheus figures, for the driver to add up


class ShardWorker:
    def __init__(self) -> None:
        self.run: Run | None = None
        self.stopping: str | None = None  # a stop that came before the run was built

    async def execute(self, config: dict[str, Any], shard: int, shards: int, shard_dir: str,
                      cache: bool, force: bool, metrics: bool,
                      retrieval_dir: str | None = None) -> dict[str, Any]:
        """The shard's summary (`process_cpu_s`: this worker's, its start included); a
        RunStopped (a fatal upstream error) is raised to the driver. With `metrics`, the
        shard's Prometheus figures go to a file the driver adds up; `retrieval_dir`: the
        index the driver built, loaded read-only."""
        where = Path(shard_dir)
        with Lease(where):
            self.run = Run(validate_config(config), RunOptions(
                run_dir=where, shard=(shard, shards), progress=False, cache=cache, force=force,
                shared_storage=True, presplit=seeds_file(where),
                metrics_file=where / METRICS_FILE if metrics else None,
                retrieval_dir=Path(retrieval_dir) if retrieval_dir else None))
            if self.stopping is not None:
                self.run.stop_admitting(self.stopping)
            return await self.run.execute()

    def node(self) -> str:
        """The Ray node this worker runs on."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def stop(self, reason: str) -> None:
        """Admit no more seeds; what was started finishes (a signal at the driver)."""
        self.stopping = reason
        if self.run is not None:
            self.run.stop_admitting(reason)
