"""The run's Prometheus `/metrics` (`--metrics-port`): a collector that reads, at scrape
time, the counters the engine keeps anyway (nothing is added per request), served for the
life of the run and `--metrics-linger` seconds after it.

Served by aiohttp on the run's own loop, not by prometheus_client's `start_http_server` (a
thread): the collector reads dicts and counters the loop changes (a Counter can gain a key
mid-scrape), and on the loop a scrape sees one consistent moment without a lock; stopping is
one awaited cleanup that leaves no thread behind. A scrape takes the loop well under a
millisecond. Imported only when the option is given: prometheus-client is an extra."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable, Iterable, Iterator

from aiohttp import web

from gristmill.dataset.files import write_atomic
from gristmill.errors import ConfigError
from gristmill.runs.spend import backend_cost

try:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                        HistogramMetricFamily, Metric)
    from prometheus_client.registry import Collector, CollectorRegistry
except ModuleNotFoundError as error:  # the extra is not installed
    raise ConfigError("--metrics-port needs prometheus-client: "
                      "pip install 'gristmill[metrics]'") from error

if TYPE_CHECKING:
    from gristmill.runs.lifecycle import Run
    from gristmill.scheduling.client import ModelClient
    from gristmill.scheduling.histogram import Histogram

log = logging.getLogger("gristmill.metrics")
Rows = Iterable[tuple[list[str], float]]


def counter(name: str, doc: str, labels: list[str], rows: Rows) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)  # exposed as name_total
    for values, value in rows:
        family.add_metric(values, value)
    return family


def gauge(name: str, doc: str, labels: list[str], rows: Rows) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


class RunCollector(Collector):
    """Every metric of a live `Run`, from its stats, its clients and their endpoints."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def collect(self) -> Iterator[Metric]:
        yield from self.run_metrics()
        yield from self.backend_metrics()

    def run_metrics(self) -> Iterator[Metric]:
        run, stats = self.run, self.run.stats
        outcome = run.outcome
        yield gauge("gristmill_run_status", "1, labelled with the run's status and, once it "
                    "ended, its stop reason", ["status", "stop_reason"],
                    [([outcome.status, outcome.stop_reason] if outcome else ["running", ""], 1)])
        yield gauge("gristmill_run_elapsed_seconds", "time since the run started", [],
                    [([], stats.elapsed)])
        yield counter("gristmill_seeds_admitted", "seeds admitted into the first stage", [],
                      [([], stats.seeds_admitted)])
        yield counter("gristmill_records_written", "records written to output.jsonl by this "
                      "session", [], [([], stats.records)])
        yield gauge("gristmill_records_resumed", "records an earlier session had written", [],
                    [([], stats.resumed_records)])
        yield counter("gristmill_rejects", "rejects written, by stage and by validator or "
                      "error", ["stage", "reason"],
                      ((list(key.partition(": ")[::2]), n) for key, n in stats.rejects.items()))
        yield counter("gristmill_validator_rejections", "answers a validator rejected "
                      "(regenerated ones included)", ["validator"],
                      (([name], n) for name, n in stats.validation.rejected.items()))
        yield counter("gristmill_streams_aborted", "streams a validator stopped early", [],
                      [([], stats.validation.aborted)])
        yield counter("gristmill_stage_done", "inputs a stage finished, accepted or not",
                      ["stage"], (([s.name], s.done) for s in stats.stages))
        yield gauge("gristmill_stage_in_flight", "inputs a stage is working on", ["stage"],
                    (([s.name], s.in_flight) for s in stats.stages))

    def backend_metrics(self) -> Iterator[Metric]:
        clients = self.run.clients.items()
        yield counter("gristmill_requests", "requests finished, by backend and outcome: ok, "
                      "the error's type, or aborted (a validator or a cancel stopped it)",
                      ["backend", "outcome"],
                      (row for name, c in clients for row in request_outcomes(name, c)))
        yield counter("gristmill_endpoint_requests", "requests finished per endpoint: ok (an "
                      "HTTP 200) or error", ["backend", "endpoint", "outcome"],
                      (row for name, c in clients for row in endpoint_outcomes(name, c)))
        yield counter("gristmill_retries", "requests retried, by the error that caused it",
                      ["backend", "reason"],
                      (([name, reason], n) for name, c in clients for reason, n in
                       c.retried.items()))
        yield counter("gristmill_prompt_tokens", "prompt tokens the backends reported",
                      ["backend"], (([name], c.usage.prompt_tokens) for name, c in clients))
        yield counter("gristmill_completion_tokens", "completion tokens the backends "
                      "reported", ["backend"],
                      (([name], c.usage.completion_tokens) for name, c in clients))
        yield counter("gristmill_cached_prompt_tokens", "prompt tokens the backends reported "
                      "as served from their prompt cache", ["backend"],
                      (([name], c.usage.cached_prompt_tokens) for name, c in clients))
        yield from self.spend_metrics()
        caches = [(name, c.cache) for name, c in clients if c.cache is not None]
        yield counter("gristmill_cache_hits", "answers replayed from the run's cache",
                      ["backend"], (([name], cache.hits) for name, cache in caches))
        yield counter("gristmill_cache_misses", "cache lookups that found no answer",
                      ["backend"], (([name], cache.misses) for name, cache in caches))
        yield histogram("gristmill_request_duration_seconds", "time from sending to the "
                        "whole answer, answered attempts", clients, lambda c: c.latency)
        yield histogram("gristmill_time_to_first_token_seconds", "time from sending to a "
                        "stream's first text", clients, lambda c: c.first_token)
        yield gauge("gristmill_backend_in_flight", "requests holding a permit", ["backend"],
                    (([name], c.in_flight) for name, c in clients))
        yield gauge("gristmill_backend_in_flight_cap", "the backend's in-flight cap (AIMD, "
                    "server limits)", ["backend"], (([name], c.pool.cap) for name, c in clients))
        endpoints = [(name, e) for name, c in clients
                     if (found := c.backend.capabilities.endpoints) is not None
                     for e in found.endpoints]
        yield gauge("gristmill_in_flight", "requests outstanding per endpoint",
                    ["backend", "endpoint"], (([n, e.url], e.outstanding) for n, e in endpoints))
        yield gauge("gristmill_in_flight_cap", "the in-flight cap per endpoint (from the "
                    "server's /metrics when scraped)", ["backend", "endpoint"],
                    (([n, e.url], e.cap) for n, e in endpoints))


    def spend_metrics(self) -> Iterator[Metric]:
        """Cost per priced backend, earlier sessions included (as summary.json: a resumed
        run's counter starts where the last left off, which `increase()` reads as no reset),
        and the budget: its cap and what requests in flight have reserved."""
        run = self.run
        yield counter("gristmill_cost_usd", "USD spent, from the usage the servers reported, "
                      "all sessions; priced backends only", ["backend"],
                      (([name], cost) for name, cost in backend_cost(run).items()
                       if cost is not None))
        budget = run.budget
        yield gauge("gristmill_budget_usd", "the run's spending budget (--budget-usd), when "
                    "set", [], [([], budget.cap)] if budget else [])
        yield gauge("gristmill_budget_reserved_usd", "worst-case cost reserved by requests in "
                    "flight under the budget", [], [([], budget.reserved)] if budget else [])


def request_outcomes(name: str, client: ModelClient) -> Rows:
    """ok: the answered attempts (the latency histogram's count); errors by type; aborted."""
    yield [name, "ok"], client.latency.count
    for error, n in client.errors.items():
        yield [name, error], n
    yield [name, "aborted"], client.aborted


def endpoint_outcomes(name: str, client: ModelClient) -> Rows:
    endpoints = client.backend.capabilities.endpoints
    for e in endpoints.endpoints if endpoints is not None else ():
        yield [name, e.url, "ok"], e.answered
        yield [name, e.url, "error"], max(0, e.requests - e.answered - e.outstanding)


def histogram(name: str, doc: str, clients: Iterable[tuple[str, ModelClient]],
              which: Callable[[ModelClient], Histogram]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=["backend"])
    for backend, client in clients:
        h = which(client)
        family.add_metric([backend], h.cumulative(), h.sum)
    return family


async def scrape(registry: CollectorRegistry, request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_text(run: Run) -> bytes:
    """The run's metrics in the text format (a cluster's shard writes them for its driver)."""
    registry = CollectorRegistry()
    registry.register(RunCollector(run))
    return generate_latest(registry)


async def keep_metrics_file(run: Run, path: Path, interval_s: float) -> None:
    """`path` rewritten with the run's metrics every `interval_s` (and once more at its end,
    by `Run`); cancelled when the run ends."""
    while True:
        write_atomic(path, metrics_text(run))
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def serve_metrics(collector: Collector, host: str, port: int, linger_s: float
                        ) -> AsyncIterator[None]:
    """`/metrics` on host:port while the body runs (the run, its summary included), then
    `linger_s` more seconds (not after a cancel), then closed: no socket or task is left."""
    registry = CollectorRegistry()
    registry.register(collector)
    app = web.Application()
    app.router.add_get("/metrics", partial(scrape, registry))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            raise ConfigError(f"--metrics-port {port}: cannot listen on {host}: "
                              f"{error.strerror or error}") from None
        log.info("metrics at http://%s:%d/metrics", host, port)
        cancelled = False
        try:
            yield
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if linger_s > 0 and not cancelled:  # the last scrapes see the final counts
                await asyncio.sleep(linger_s)
    finally:
        await runner.cleanup()
