"""How to run a pipeline, beyond its config: where, how much, what to show."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from gristmill.runs.lifecycle import Run


@dataclass
class RunOptions:
    run_dir: Path | None = None
    limit: int | None = None  # seeds to admit (0: no limit); kept by a resume
    target_records: int | None = None  # records to keep (0: none; None: the config's); kept
    progress: bool | None = None  # None: live display on a terminal, plain lines otherwise
    progress_interval_s: float = 10.0
    on_start: Callable[[Run], None] | None = None  # e.g. to install signal handlers
    cache: bool = True  # replay answers already paid for; off: ask again
    force: bool = False  # resume even if the config changed answers
    state_interval_s: float = 2.0
    tune_gc: bool = True  # fewer collector passes while the run lasts (runs/gc_tuning.py)
    metrics_port: int | None = None  # serve Prometheus /metrics here (0: not); kept
    metrics_host: str | None = None  # None: 127.0.0.1; kept by a resume
    metrics_linger_s: float = 0.0  # keep /metrics up so long after the end
    budget_usd: float | None = None  # cap on spend (None: the config's; 0: none); kept
    shard: tuple[int, int] | None = None  # (index, count): only that shard's seeds; kept
    shared_storage: bool = False  # the run directory is on a network file system: no WAL
    presplit: Path | None = None  # a shard's seeds, as the cluster's driver wrote them
    metrics_file: Path | None = None  # write the Prometheus text here (a shard, for its driver)
    retrieval_dir: Path | None = None  # the index a cluster's driver built: loaded, not built


def metrics_served(options: RunOptions, collector: Callable[[], Any]
                   ) -> contextlib.AbstractAsyncContextManager[None]:
    """Prometheus /metrics (--metrics-port) from what `collector()` makes, while the body runs
    and lingering after; nothing without the option (prometheus-client is an extra)."""
    if not options.metrics_port:
        return contextlib.nullcontext()
    from gristmill.runs.prometheus import serve_metrics

    return serve_metrics(collector(), options.metrics_host or "127.0.0.1",
                         options.metrics_port, options.metrics_linger_s)


# Settings a run keeps across sessions (RUN/settings.json): they change no answer, so a resume
# uses the stored value of each one its caller does not give.
KEPT = ("limit", "target_records", "metrics_port", "metrics_host", "budget_usd", "shard")


def kept_settings(options: RunOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in KEPT if getattr(options, name) is not None}


def with_kept_settings(options: RunOptions, stored: dict[str, Any] | None) -> RunOptions:
    """`options`, with each kept setting it leaves unset taken from an earlier session."""
    inherited = {name: stored[name] for name in KEPT
                 if getattr(options, name) is None and stored and stored.get(name) is not None}
    return replace(options, **inherited) if inherited else options
