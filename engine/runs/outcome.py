"""Why a run stopped: one table gives each stop reason its status and exit code, for the
command's exit, state.json, summary.json and the metrics alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gristmill.errors import RunStopped

# stop reason -> (status, exit code, what it means); the docs and `gristmill --help` print it
STOP_REASONS: dict[str, tuple[str, int, str]] = {
    "complete": ("finished", 0, "every seed went through (rejects included)"),
    "limit": ("finished", 0, "--limit seeds went through"),
    "target": ("finished", 0, "--target-records records were kept"),
    "internal_error": ("failed", 1, "an unexpected error (a bug): the traceback says where"),
    "config_error": ("failed", 2, "a config or usage error: the message names the field"),
    "fatal_upstream": ("failed", 3, "a backend refused for good (key, model, quota, "
                       "unreachable): fix it, then resume"),
    "error_rate": ("failed", 4, "too many requests failed (stop_on_error_rate)"),
    "budget": ("stopped", 5, "the spending budget is reached"),
    "sigint": ("stopped", 130, "Ctrl-C (SIGINT)"),
    "sigterm": ("stopped", 143, "SIGTERM"),
    "cancelled": ("stopped", 1, "the run's task was cancelled (the Python API)"),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    stop_reason: str
    detail: str | None = None  # what the server said, which backend: one line

    @property
    def status(self) -> str:
        return STOP_REASONS[self.stop_reason][0]

    @property
    def exit_code(self) -> int:
        return STOP_REASONS[self.stop_reason][1]

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "stop_reason": self.stop_reason, "detail": self.detail,
                "exit_code": self.exit_code}

    @classmethod
    def of_error(cls, error: BaseException) -> "Outcome":
        if isinstance(error, BaseExceptionGroup):  # from TaskGroups: the first says why
            error = first_leaf(error)
        if isinstance(error, RunStopped):
            return cls(error.stop_reason, str(error))
        return cls("internal_error", f"{type(error).__name__}: {error}")


def first_leaf(group: BaseExceptionGroup) -> BaseException:
    """The first exception of a (nested: TaskGroups within TaskGroups) group."""
    first = group.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def exit_code_table() -> str:
    """The table as text, for `--help` (the docs hold the same as markdown)."""
    rows = {}
    for reason, (_, code, meaning) in STOP_REASONS.items():
        if reason != "cancelled":
            rows.setdefault(code, []).append(meaning)
    return "\n".join(f"  {code:>3}  {'; '.join(meanings)}" for code, meanings in rows.items())
