"""Metrics-driven concurrency for vLLM-style servers: keep the running batch full and the
waiting queue short, by reading what the server reports about itself.

`next_cap` is the decision, a plain function; `MetricsController` is its small state (slow
start, the last preemption count). The scraping itself lives in `engine/runs/metrics_poller.py`."""

from __future__ import annotations

import math
from dataclasses import dataclass

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
PREEMPTIONS = "vllm:num_preemptions_total"


@dataclass(slots=True, frozen=True)
class ServerLoad:
    running: float
    waiting: float
    kv_usage: float  # 0..1
    preemptions: float  # a counter

    @classmethod
    def from_metrics(cls, metrics: dict[str, float]) -> "ServerLoad":
        kv = next((metrics[k] for k in KV_USAGE if k in metrics), 0.0)
        return cls(metrics.get(RUNNING, 0.0), metrics.get(WAITING, 0.0), kv,
                   metrics.get(PREEMPTIONS, 0.0))


def target_waiting(running: float) -> int:
    """A short queue so a finished sequence is replaced at the next step, no longer."""
    return max(2, math.ceil(0.1 * running))


class MetricsController:
    KV_FULL = 0.98
    BACKOFF = 0.8

    def __init__(self, ceiling: int, initial: int = 8, floor: int = 1) -> None:
        self.ceiling = ceiling
        self.floor = floor
        self.cap = max(floor, min(initial, ceiling))
        self.slow_start = True
        self._preemptions: float | None = None
        self._queued_before = False  # was the queue over target at the previous scrape too?

    def next_cap(self, load: ServerLoad, in_flight: int) -> int:
        preempted = self._preemptions is not None and load.preemptions > self._preemptions
        self._preemptions = load.preemptions
        queued = load.waiting > target_waiting(load.running)
        queued_before, self._queued_before = self._queued_before, queued
        if preempted or load.kv_usage >= self.KV_FULL:
            # The server is evicting work it already did: back off.
            self.cap = int(self.cap * self.BACKOFF)
            self.slow_start = False
        elif queued and queued_before:
            # More queued than needed to refill the batch, twice running (one sample can be
            # requests that arrived just before a step admits them): shrink to what runs
            # plus a margin.
            self.cap = min(self.cap, int(load.running) + target_waiting(load.running))
            self.slow_start = False
        elif not queued and in_flight >= 0.9 * self.cap:
            # The cap is what limits us and the server has room: grow.
            self.cap = self.cap * 2 if self.slow_start else self.cap + max(1, self.cap // 16)
        self.cap = max(self.floor, min(self.ceiling, self.cap))
        return self.cap
