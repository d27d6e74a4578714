"""`cluster:`: running one pipeline over a Ray cluster (`gristmill run --ray`)."""

from __future__ import annotations

from pydantic import model_validator

from gristmill.config.base import Field, Strict


class ClusterConfig(Strict):
    """How a run is split over a Ray cluster. The seeds fall into `shards` parts by their
    text's digest; at most `workers` shards run at once, each a gristmill engine in a Ray
    actor with its own directory under RUN/shards/. Records do not depend on the split."""

    address: str | None = Field(None, answers=False, description="The Ray cluster to join, "
                                "e.g. 'ray://head:10001' or 'auto'; none: a local Ray started "
                                "for the run (`--ray ADDRESS` overrides it).")
    shards: int = Field(16, answers=False, ge=1, le=100_000, description="Parts the seeds "
                        "are split into, fixed for the run's life (a resume keeps the count "
                        "the run started with); more shards than workers lets a lost worker "
                        "cost only its shard's unfinished part. `--shards` overrides it.")
    workers: int | None = Field(None, answers=False, ge=1, description="Shards running at "
                                "once; default: the cluster's CPUs / cpus_per_worker. A "
                                "backend's max_in_flight and rate limits are the whole run's, "
                                "divided among them. `--workers` overrides it.")
    cpus_per_worker: float = Field(1.0, answers=False, gt=0, description="Ray CPUs each "
                                   "worker reserves.")

    @model_validator(mode="after")
    def _workers_within_shards(self) -> "ClusterConfig":
        if self.workers is not None and self.workers > self.shards:
            self.workers = self.shards  # a worker without a shard would idle
        return self
