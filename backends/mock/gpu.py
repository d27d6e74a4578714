"""Simulated GPU for the mock server: continuous batching like vLLM, and `/metrics`.

`GpuScheduler` is the plain, synchronous model (admission, decode steps, KV budget,
preemption) and takes `now` from its caller, so tests drive it without a clock. `GpuRunner`
is the thin asyncio loop around it: one task per server that sleeps for each step's simulated
GPU time and on an `asyncio.Event` when there is no work.

The model, per step: running sequences each produce one token; the step takes
`step_ms + step_ms_per_seq * running` ms, plus prompt_tokens / prefill_tokens_per_ms for each
sequence that joins in that step (its prefill also yields its first token, as in vLLM).
A sequence holds prompt + generated tokens of KV. When the running ones outgrow the budget,
the newest is preempted: back to the front of the queue, its progress lost (recompute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from gristmill.errors import ConfigError


# -- options ------------------------------------------------------------------------------
def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "simulated GPU", "--gpu batches requests like vLLM; --latency-ms and --tokens-per-s "
        "are then ignored (the batch decides the timing)")
    add = group.add_argument
    add("--gpu", action="store_true", help="simulate continuous batching on one GPU")
    add("--max-running", type=int, default=64, metavar="N",
        help="most sequences in the running batch; the rest wait in FIFO order (default 64)")
    add("--step-ms", type=float, default=10.0, metavar="B",
        help="fixed time of one decode step in ms (default 10)")
    add("--step-ms-per-seq", type=float, default=0.2, metavar="P",
        help="added step time per running sequence in ms (default 0.2)")
    add("--prefill-tokens-per-ms", type=float, default=50.0, metavar="R",
        help="prompt tokens prefilled per ms, added to the step they join in (default 50)")
    add("--kv-tokens", type=int, default=0, metavar="K",
        help="KV-cache budget in tokens (prompt + generated per sequence); 0 = unlimited")


def check_gpu_args(args: argparse.Namespace) -> None:
    if args.max_running < 1 or args.kv_tokens < 0:
        raise ConfigError("--max-running must be >= 1 and --kv-tokens >= 0")
    if min(args.step_ms, args.step_ms_per_seq) < 0 or args.prefill_tokens_per_ms <= 0:
        raise ConfigError("--step-ms and --step-ms-per-seq must be >= 0, "
                          "--prefill-tokens-per-ms > 0")


# -- the model ----------------------------------------------------------------------------
class Seq:
    """One request's sequence. `generated` restarts at 0 on preemption; `emitted` is the
    most ever generated, i.e. what a streaming client has been offered already."""

    __slots__ = ("prompt_tokens", "target", "generated", "emitted", "done", "cancelled",
                 "prefilled", "event")

    def __init__(self, prompt_tokens: int, target: int) -> None:
        self.prompt_tokens, self.target = prompt_tokens, target
        self.generated = self.emitted = 0
        self.done = self.cancelled = self.prefilled = False
        self.event: Any = None  # the async side's wake-up; the scheduler never touches it

    @property
    def kv(self) -> int:
        return self.prompt_tokens + self.generated

    def __repr__(self) -> str:
        return f"Seq({self.prompt_tokens}+{self.generated}/{self.target})"


@dataclass(frozen=True, slots=True)
class StepPlan:
    started: float
    seqs: tuple[Seq, ...]  # the batch of this step, newcomers included
    admitted: tuple[Seq, ...]
    prefill_tokens: int
    duration: float  # seconds of simulated GPU time


class GpuScheduler:
    def __init__(self, max_running: int = 64, step_ms: float = 10.0,
                 step_ms_per_seq: float = 0.2, prefill_tokens_per_ms: float = 50.0,
                 kv_tokens: int = 0) -> None:
        self.max_running, self.kv_tokens = max_running, kv_tokens
        self.step_ms, self.step_ms_per_seq = step_ms, step_ms_per_seq
        self.prefill_tokens_per_ms = prefill_tokens_per_ms
        self.running: list[Seq] = []  # in admission order: the last is the newest
        self.waiting: deque[Seq] = deque()
        self.kv_used = 0
        self.reset_counters()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "GpuScheduler":
        return cls(args.max_running, args.step_ms, args.step_ms_per_seq,
                   args.prefill_tokens_per_ms, args.kv_tokens)

    def reset_counters(self) -> None:
        """Zero the counters (a /stats/reset); the batch and the queue are state of now."""
        self.steps = self.preemptions = self.generation_tokens = self.prompt_tokens = 0

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.kv_used / self.kv_tokens) if self.kv_tokens else 0.0

    def step_ms_for(self, running: int, prefill_tokens: int = 0) -> float:
        return (self.step_ms + self.step_ms_per_seq * running
                + prefill_tokens / self.prefill_tokens_per_ms)

    def add(self, seq: Seq) -> Seq:
        self.waiting.append(seq)
        return seq

    def cancel(self, seq: Seq) -> None:
        """The client went away. A waiting sequence leaves now; a running one at the end of
        the step under way (that step has been paid for already)."""
        if seq.done or seq.cancelled:
            return
        seq.cancelled = True
        if seq in self.running:
            return
        with contextlib.suppress(ValueError):
            self.waiting.remove(seq)

    def plan_step(self, now: float) -> StepPlan:
        """Drop cancelled sequences, admit from the queue, and price the step."""
        self._drop_cancelled()
        admitted = tuple(self._admit())
        prefill = sum(s.prompt_tokens for s in admitted)
        ms = self.step_ms_for(len(self.running), prefill)
        return StepPlan(now, tuple(self.running), admitted, prefill, ms / 1000.0)

    def _admit(self) -> Iterable[Seq]:
        """FIFO, no overtaking. The head waits while the KV budget lacks room for its prompt
        plus one token, unless nothing runs (so an oversized prompt cannot starve)."""
        running, waiting, budget = self.running, self.waiting, self.kv_tokens
        while waiting and len(running) < self.max_running:
            head = waiting[0]
            if budget and running and self.kv_used + head.prompt_tokens + 1 > budget:
                return
            waiting.popleft()
            running.append(head)
            self.kv_used += head.prompt_tokens
            if not head.prefilled:  # counted once per request, as vLLM does
                head.prefilled = True
                self.prompt_tokens += head.prompt_tokens
            yield head

    def finish_step(self, plan: StepPlan) -> list[Seq]:
        """One token for every sequence of the batch; finished ones leave; then preempt while
        the KV budget is exceeded. Returns the sequences with new tokens or just finished."""
        touched = []
        for seq in plan.seqs:
            if seq.cancelled or seq.done:
                continue
            if seq.generated < seq.target:
                seq.generated += 1
                self.kv_used += 1
                self.generation_tokens += 1
            if seq.generated > seq.emitted or seq.generated >= seq.target:
                seq.emitted = max(seq.emitted, seq.generated)
                seq.done = seq.generated >= seq.target
                touched.append(seq)
                if seq.done:
                    self._remove(seq)
        self._drop_cancelled()  # their KV is free before anyone is preempted for it
        self._preempt()
        self.steps += 1
        return touched

    def _preempt(self) -> None:
        """Newest first, and never the last one running: it alone may exceed the budget."""
        running, budget = self.running, self.kv_tokens
        while budget and self.kv_used > budget and len(running) > 1:
            seq = running.pop()
            self.kv_used -= seq.kv
            seq.generated = 0  # recompute: its tokens will be generated again
            self.waiting.appendleft(seq)
            self.preemptions += 1

    def _drop_cancelled(self) -> None:
        if any(s.cancelled for s in self.running):
            for seq in [s for s in self.running if s.cancelled]:
                self._remove(seq)

    def _remove(self, seq: Seq) -> None:
        self.running.remove(seq)
        self.kv_used -= seq.kv

    def snapshot(self) -> dict[str, Any]:
        """The `gpu` entry of /stats."""
        return {"running": len(self.running), "waiting": len(self.waiting),
                "kv_usage": round(self.kv_usage, 6), "preemptions": self.preemptions,
                "steps": self.steps, "generation_tokens": self.generation_tokens}


# -- the loop -----------------------------------------------------------------------------
class GpuRunner:
    """One task that runs steps while there is work, and waits on an event when idle.
    Request handlers `submit`, then `wait_tokens`; `cancel` on the way out."""

    def __init__(self, scheduler: GpuScheduler, loop: asyncio.AbstractEventLoop) -> None:
        self.scheduler, self.loop = scheduler, loop
        self.work = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = self.loop.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def submit(self, prompt_tokens: int, target: int) -> Seq:
        seq = Seq(prompt_tokens, target)
        seq.event = asyncio.Event()
        self.scheduler.add(seq)
        self.work.set()
        return seq

    def cancel(self, seq: Seq) -> None:
        self.scheduler.cancel(seq)

    async def _run(self) -> None:
        sched, work, loop = self.scheduler, self.work, self.loop
        while True:
            if not sched.busy:
                work.clear()
                await work.wait()
                continue
            plan = sched.plan_step(loop.time())
            if not plan.seqs:  # only cancelled ones were left: no step to pay for
                continue
            await asyncio.sleep(plan.duration)  # the simulated GPU time of this step
            for seq in sched.finish_step(plan):
                seq.event.set()


async def wait_tokens(seq: Seq, seen: int) -> None:
    """Until `seq` has emitted more than `seen` tokens, or is done."""
    event = seq.event
    while seq.emitted <= seen and not seq.done:
        event.clear()
        await event.wait()


# -- /metrics -----------------------------------------------------------------------------
# (name, type, help, key in the values mapping); vLLM v1 names, plus v0's KV gauge.
METRICS = (
    ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
     "running"),
    ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
     "waiting"),
    ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
     "kv_usage"),
    ("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage (pre-v1 name of "
     "vllm:kv_cache_usage_perc).", "kv_usage"),
    ("vllm:num_preemptions_total", "counter", "Cumulative number of preemptions.",
     "preemptions"),
    ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
     "prompt_tokens"),
    ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
     "generation_tokens"),
)
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SUCCESS = ("vllm:request_success_total", "Count of successfully processed requests.")


def render_metrics(model: str, values: Mapping[str, float],
                   finished: Mapping[str, int]) -> bytes:
    """Prometheus text format. `finished` counts successes by finish reason."""
    label = '{model_name="%s"' % model.replace("\\", "\\\\").replace('"', '\\"')
    lines = []
    for name, kind, text, key in METRICS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}",
                  f"{name}{label}}} {float(values[key])!r}"]
    name, text = SUCCESS
    lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
    for reason in sorted({"stop", "length", *finished}):
        lines.append(f'{name}{label},finished_reason="{reason}"}} '
                     f"{float(finished.get(reason, 0))!r}")
    return ("\n".join(lines) + "\n").encode()


def metric_values(scheduler: GpuScheduler | None, stats: Any) -> dict[str, float]:
    """The scheduler's numbers in GPU mode; otherwise what a plain server knows."""
    if scheduler is None:
        return {"running": stats.in_flight, "waiting": 0, "kv_usage": 0.0, "preemptions": 0,
                "prompt_tokens": stats.prompt_tokens, "generation_tokens": stats.tokens_sent}
    return {"running": len(scheduler.running), "waiting": len(scheduler.waiting),
            "kv_usage": scheduler.kv_usage, "preemptions": scheduler.preemptions,
            "prompt_tokens": scheduler.prompt_tokens,
            "generation_tokens": scheduler.generation_tokens}
