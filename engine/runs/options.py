"""How to run a pipeline, beyond its config: where, how much, what to show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from gristmill.runs.lifecycle import Run


@dataclass
class RunOptions:
    run_dir: Path | None = None
    limit: int | None = None
    progress: bool | None = None  # None: live display on a terminal, plain lines otherwise
    progress_interval_s: float = 10.0
    on_start: Callable[[Run], None] | None = None  # e.g. to install signal handlers
    cache: bool = True  # replay answers already paid for; off: ask again
    force: bool = False  # resume even if the config changed answers
    state_interval_s: float = 2.0
    tune_gc: bool = True  # fewer collector passes while the run lasts (runs/gc_tuning.py)
