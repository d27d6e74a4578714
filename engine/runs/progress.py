"""Live progress: a rich table per stage on a terminal, a plain line now and then otherwise.

A display refresh is periodic by nature; it reads counters and never touches the work."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


from gristmill.runs.spend import spend_line

if TYPE_CHECKING:
    from gristmill.runs.runner import Run


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Rates:
    """Per-stage request and token rates over the last refresh interval."""

    def __init__(self, run: "Run") -> None:
        self.run = run
        self.last = self._sample()
        self.last_at = time.monotonic()
        self.current = [(0.0, 0.0)] * len(run.stats.stages)

    def _sample(self) -> list[tuple[int, int]]:
        return [(s.done, s.prompt_tokens + s.completion_tokens) for s in self.run.stats.stages]

    def update(self) -> None:
        now, sample = time.monotonic(), self._sample()
        dt = max(now - self.last_at, 1e-6)
        self.current = [((d - d0) / dt, (t - t0) / dt)
                        for (d, t), (d0, t0) in zip(sample, self.last)]
        self.last, self.last_at = sample, now


def backend_lines(run: "Run") -> list[str]:
    """In flight against the cap, and per endpoint: its share, its own cap, its state and
    what its server says about its batch."""
    lines = []
    for name, client in run.clients.items():
        line = f"{name}: in flight {client.pool.in_flight}/{client.pool.cap}"
        if client.pool.waiting:
            line += f" · waiting for permits {client.pool.waiting}"
        lines.append(line)
        endpoints = client.backend.capabilities.endpoints
        if endpoints is not None and (len(endpoints.endpoints) > 1 or client.server_load):
            lines += [endpoint_line(e, client.server_load.get(e.url))
                      for e in endpoints.endpoints]
    return lines


def endpoint_line(endpoint: Any, load: Any) -> str:
    cap = f"/{endpoint.cap}" if endpoint.cap < 1 << 30 else ""
    line = f"  {endpoint.url}: {endpoint.state} · in flight {endpoint.outstanding}{cap}"
    if load is not None:
        line += (f" · running {load.running:.0f} waiting {load.waiting:.0f} "
                 f"KV {100 * load.kv_usage:.0f}%")
    return line


def validation_line(run: "Run") -> str:
    v = run.stats.validation
    if not v.rejected:
        return ""
    counts = ", ".join(f"{k} {n:,}" for k, n in v.rejected.most_common())
    return (f"validators rejected: {counts} · stopped early {v.aborted:,} · "
            f"~{v.tokens_saved:,} tokens not generated")


def notes(run: "Run") -> list[str]:
    """The lines under the stages: backends, spend, validators (empty ones left out)."""
    return [line for line in (*backend_lines(run), spend_line(run), validation_line(run))
            if line]


def render_table(run: "Run", rates: Rates) -> Table:
    stats = run.stats
    table = Table(title=f"gristmill · {run.config.name}", title_justify="left")
    for column in ("stage", "done", "in flight", "queued", "failed", "req/s", "tok/s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for i, (stage, (rps, tps)) in enumerate(zip(stats.stages, rates.current)):
        table.add_row(stage.name, f"{stage.done:,}", f"{stage.in_flight:,}",
                      f"{run.pipeline.queued(i):,}", f"{stage.failed:,}", f"{rps:,.1f}",
                      f"{tps:,.0f}")
    table.caption = (f"seeds {stats.seeds_admitted:,} · records {stats.records:,} · rejects "
                     f"{sum(stats.rejects.values()):,} · elapsed {_fmt_s(stats.elapsed)} · "
                     f"ETA {_fmt_s(stats.eta_s())}\n" +
                     "\n".join(notes(run)))
    table.caption_justify = "left"
    return table


def plain_line(run: "Run", rates: Rates) -> str:
    stats = run.stats
    stages = " | ".join(
        f"{s.name} {s.done} done {s.in_flight} in flight {run.pipeline.queued(i)} queued "
        f"{s.failed} failed {rps:.1f} req/s {tps:.0f} tok/s"
        for i, (s, (rps, tps)) in enumerate(zip(stats.stages, rates.current)))
    return (f"[{_fmt_s(stats.elapsed)}] seeds {stats.seeds_admitted} records {stats.records} "
            f"rejects {sum(stats.rejects.values())} ETA {_fmt_s(stats.eta_s())} :: {stages}"
            f" :: {' | '.join(l.strip() for l in notes(run))}")


async def show_progress(run: "Run", live: bool | None, interval_s: float) -> None:
    """Until cancelled: a line every `interval_s` (no terminal, or `live` False), else a
    live table."""
    rates = Rates(run)
    if live is None and not sys.stdout.isatty():
        while True:
            await asyncio.sleep(interval_s)
            rates.update()
            print(plain_line(run, rates), flush=True)
    console = Console()
    with Live(render_table(run, rates), console=console, auto_refresh=False) as display:
        while True:
            await asyncio.sleep(0.5)
            rates.update()
            display.update(render_table(run, rates), refresh=True)
