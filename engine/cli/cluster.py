"""`--ray`, `--shards`, `--workers` of `gristmill run` and `resume`: the run goes to a Ray
cluster's driver (gristmill.cluster, imported only then) instead of one process."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from gristmill.errors import ConfigError

if TYPE_CHECKING:  # --help imports neither pydantic nor the run
    from gristmill.config.pipeline import PipelineConfig
    from gristmill.runs.options import RunOptions


def add_cluster_args(p: argparse.ArgumentParser, shards: bool = True) -> None:
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run the shards on a "
                   "Ray cluster: the one at ADDRESS (e.g. ray://head:10001, auto), or without "
                   "one a local Ray started for the run (docs/cluster.md); a run started so "
                   "resumes on Ray")
    if shards:
        p.add_argument("--shards", type=int, metavar="N", help="with --ray: parts the seeds "
                       "are split into, fixed for the run (default: cluster.shards)")
    p.add_argument("--workers", type=int, metavar="N", help="with --ray: shards running at "
                   "once (default: cluster.workers, else the cluster's CPUs)")


def cluster_run(config: PipelineConfig, args: argparse.Namespace,
                options: RunOptions) -> Any:
    """The driver of a run on Ray, or None for a run in this process."""
    run_dir = options.run_dir
    from_before = None
    if run_dir is not None and (run_dir / "cluster.json").exists():
        from gristmill.cluster.driver import recorded

        from_before = recorded(run_dir)
    wanted = getattr(args, "ray", None)
    if wanted is not None and from_before is None and run_dir is not None \
            and (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir} was run in one process: resume it without --ray (its "
                          "answers and records are in its own store)")
    if wanted is None and from_before is None:
        if getattr(args, "shards", None) or getattr(args, "workers", None):
            raise ConfigError("--shards and --workers split a run over a cluster: add --ray")
        return None
    try:
        from gristmill.cluster.driver import ClusterRun
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray: pip install 'gristmill[ray]' ({exc})") from None
    return ClusterRun(config, options, address=wanted or None,
                      shards=getattr(args, "shards", None), workers=getattr(args, "workers", None))
