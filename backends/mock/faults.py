"""Timing, faults, rate limits and counters of the mock server, and the command-line options
that configure them: pure state, no I/O.

Everything here takes `now` (seconds, any monotonic origin) from the caller and owns its own
`random.Random`, so a run with the same `--seed` and the same arrival order reproduces the same
faults, and tests can drive these classes without a clock.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import deque
from typing import Any, Callable, Mapping

from gristmill.backends.mock.bad import BAD_KINDS
from gristmill.backends.mock.planted import PLANT_KINDS, parse_kinds
from gristmill.errors import ConfigError
from gristmill.backends.mock.account import add_account_arguments

FAULT_KINDS = ("429", "500", "reset", "cut", "hang")  # drawn in this order
# Answers that break the wire format (`--bad-wire-rate`); sse-json fits only streams,
# body-json only whole bodies, the others both.
WIRE_KINDS = ("sse-json", "body-json", "html", "null-delta", "truncated")


class Latency:
    """Delay before a response starts. Parsed from milliseconds, sampled in seconds."""

    __slots__ = ("kind", "a", "b")

    def __init__(self, kind: str, a: float, b: float = 0.0) -> None:
        self.kind, self.a, self.b = kind, a, b

    @property
    def is_zero(self) -> bool:
        return self.kind == "fixed" and self.a == 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0

    def __repr__(self) -> str:
        return f"Latency({self.kind!r}, {self.a}, {self.b})"


def parse_latency(spec: str | float) -> Latency:
    """'0' none, '100' fixed, '50-200' uniform, 'exp:100' exponential with that mean (all ms)."""
    text = str(spec).strip().lower()
    try:
        if text.startswith("exp:"):
            return Latency("exp", _ms(text[4:]))
        lo, sep, hi = text.partition("-")
        if sep:
            a, b = _ms(lo), _ms(hi)
            if b < a:
                raise ValueError
            return Latency("uniform", a, b)
        return Latency("fixed", _ms(text))
    except ValueError:
        raise ValueError(f"latency must be MS, LO-HI or exp:MEAN (ms), got {spec!r}") from None


def _ms(text: str) -> float:
    value = float(text)
    if value < 0 or not math.isfinite(value):
        raise ValueError
    return value / 1000.0


def parse_length_spec(spec: str | int) -> tuple[int, int]:
    """'40-120' -> (40, 120) uniform; '80' -> (80, 80)."""
    lo_s, sep, hi_s = str(spec).strip().partition("-")
    try:
        lo, hi = int(lo_s), int(hi_s if sep else lo_s)
    except ValueError:
        raise ValueError(f"output tokens must be N or LO-HI, got {spec!r}") from None
    if lo < 0 or hi < lo:
        raise ValueError(f"output tokens range must satisfy 0 <= LO <= HI, got {spec!r}")
    return lo, hi


def parse_fraction(text: str | float) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a fault rate is a fraction in [0, 1], got {text!r}")
    return value


class FaultDrawer:
    """One uniform draw per arrival, compared with cumulative rates: the faults are mutually
    exclusive, their order is fixed, and the sequence depends only on the seed."""

    __slots__ = ("_edges", "_rng", "active")

    def __init__(self, rates: Mapping[str, float], seed: int = 0) -> None:
        total, edges = 0.0, []
        for kind in FAULT_KINDS:
            rate = parse_fraction(rates.get(kind, 0.0))
            if rate > 0:
                total += rate
                edges.append((total, kind))
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:g}; they must add up to at most 1")
        self._edges = tuple(edges)
        self._rng = random.Random(seed)
        self.active = bool(edges)

    def draw(self) -> str | None:
        if not self.active:
            return None
        u = self._rng.random()
        for edge, kind in self._edges:
            if u < edge:
                return kind
        return None


class WireDrawer:
    """Per arrival, whatever the body: is this answer's wire format broken? One draw from its
    own seeded generator (apart from faults and bad answers), so a seed breaks the same
    arrivals every run and a retried request may come out whole."""

    __slots__ = ("rate", "kinds", "_rng")

    def __init__(self, rate: float, kinds: tuple[str, ...], seed: int = 0) -> None:
        self.rate, self.kinds = rate, kinds
        self._rng = random.Random(seed + 0x317E)

    def draw(self) -> float | None:
        """None for a whole answer, else a number in [0, 1) that picks the kind."""
        if self.rate <= 0.0:
            return None
        u = self._rng.random()
        return u / self.rate if u < self.rate else None

    def kind(self, pick: float, stream: bool) -> str | None:
        """The kind among those that fit a stream or a body; None when none fits."""
        unfit = "body-json" if stream else "sse-json"
        kinds = [k for k in self.kinds if k != unfit]
        return kinds[int(pick * len(kinds))] if kinds else None


class WindowMax:
    """Largest request count and token sum seen in any sliding window, over all arrivals.

    Kept whether or not limits are enforced: it is the oracle that tells a test whether a
    client ever exceeded a limit. The maximum can only change at an arrival."""

    __slots__ = ("window", "_entries", "_tokens", "max_requests", "max_tokens")

    def __init__(self, window: float) -> None:
        self.window = window
        self.reset()

    def reset(self) -> None:
        self._entries: deque[tuple[float, int]] = deque()
        self._tokens = 0
        self.max_requests = 0
        self.max_tokens = 0

    def add(self, now: float, tokens: int) -> None:
        entries, cutoff = self._entries, now - self.window
        while entries and entries[0][0] <= cutoff:
            self._tokens -= entries.popleft()[1]
        entries.append((now, tokens))
        self._tokens += tokens
        if len(entries) > self.max_requests:
            self.max_requests = len(entries)
        if self._tokens > self.max_tokens:
            self.max_tokens = self._tokens


class Stats:
    """Counters served at /stats; plain attributes because they change on every request."""

    def __init__(self, window: float, record_arrivals: bool = False) -> None:
        self.window = WindowMax(window)
        self.record_arrivals = record_arrivals
        self.arrivals_origin = 0.0  # the server loop's clock (monotonic) at arrival 0.0
        self.reset()

    def reset(self) -> None:
        """Zero the counters; `in_flight` is a gauge of now, so it stays (and seeds the peak)."""
        self.in_flight = getattr(self, "in_flight", 0)
        self.peak_in_flight = self.in_flight
        self.requests = self.completed = 0
        self.prompt_tokens = self.completion_tokens = self.tokens_sent = 0
        self.disconnects = self.rate_limited = 0
        self.status_counts: dict[str, int] = {}
        self.finished: dict[str, int] = {}  # completed requests by finish reason
        self.faults: dict[str, int] = {}
        self.bad_answers = 0
        self.bad_kinds: dict[str, int] = {}
        self.planted: dict[str, int] = {}  # answers with a planted failure (--plant), by kind
        self.wire_faults: dict[str, int] = {}  # answers sent with a broken format, by kind
        self.arrivals: list[float] = []
        self.window.reset()

    def finish(self, reason: str) -> None:
        self.completed += 1
        self.finished[reason] = self.finished.get(reason, 0) + 1

    def status(self, code: int) -> None:
        key = str(code)
        self.status_counts[key] = self.status_counts.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (
            "requests", "completed", "status_counts", "prompt_tokens", "completion_tokens",
            "tokens_sent", "in_flight", "peak_in_flight", "disconnects", "rate_limited", "faults",
            "bad_answers", "bad_kinds", "planted", "wire_faults")}
        out["max_requests_in_window"] = self.window.max_requests
        out["max_tokens_in_window"] = self.window.max_tokens
        if self.record_arrivals:
            out["arrivals"] = self.arrivals
            out["arrivals_origin"] = self.arrivals_origin
        return out


class RateLimiter:
    """Enforced RPM/TPM over a sliding window of admitted requests (rejected ones cost nothing).

    A request is admitted when both the request count and the token sum, including it, stay
    within the limits for the window (now - window, now]."""

    __slots__ = ("rpm", "tpm", "window", "_entries", "_tokens")

    def __init__(self, rpm: int | None, tpm: int | None, window: float = 60.0) -> None:
        if window <= 0:
            raise ValueError("the rate window must be positive")
        self.rpm, self.tpm, self.window = rpm or None, tpm or None, window
        self.reset()

    @property
    def enforced(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def reset(self) -> None:
        self._entries: deque[tuple[float, int]] = deque()
        self._tokens = 0

    def _expire(self, now: float) -> None:
        entries, cutoff = self._entries, now - self.window
        while entries and entries[0][0] <= cutoff:
            self._tokens -= entries.popleft()[1]

    def admit(self, now: float, tokens: int) -> float:
        """0.0 when admitted (and counted); else seconds until the window would admit it."""
        self._expire(now)
        wait = max(self._wait_requests(now), self._wait_tokens(now, tokens))
        if wait > 0.0:
            return wait
        self._entries.append((now, tokens))
        self._tokens += tokens
        return 0.0

    def _wait_requests(self, now: float) -> float:
        entries, rpm = self._entries, self.rpm
        if rpm is None or len(entries) < rpm:
            return 0.0
        # The entry whose expiry brings the count down to rpm - 1.
        return entries[len(entries) - rpm][0] + self.window - now

    def _wait_tokens(self, now: float, tokens: int) -> float:
        tpm = self.tpm
        if tpm is None or self._tokens + tokens <= tpm or not self._entries:
            return 0.0  # an oversized request is admitted alone, so it cannot starve forever
        excess = self._tokens + tokens - tpm if tokens <= tpm else self._tokens
        for t, used in self._entries:
            excess -= used
            if excess <= 0:
                return t + self.window - now
        return self._entries[-1][0] + self.window - now

    def headers(self, now: float) -> dict[str, str]:
        """OpenAI-style `x-ratelimit-*` headers; reset = time until the oldest counted request
        leaves the window (when `remaining` next goes up)."""
        self._expire(now)
        out: dict[str, str] = {}
        reset = format_seconds(self._entries[0][0] + self.window - now) if self._entries else "0s"
        if self.rpm is not None:
            out["x-ratelimit-limit-requests"] = str(self.rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, self.rpm - len(self._entries)))
            out["x-ratelimit-reset-requests"] = reset
        if self.tpm is not None:
            out["x-ratelimit-limit-tokens"] = str(self.tpm)
            out["x-ratelimit-remaining-tokens"] = str(max(0, self.tpm - self._tokens))
            out["x-ratelimit-reset-tokens"] = reset
        return out


def format_seconds(seconds: float) -> str:
    """'1.5s', '0.25s', '0s': millisecond precision, rounded up so waiting it is enough."""
    return retry_after_value(seconds) + "s"


def retry_after_value(seconds: float) -> str:
    """A `Retry-After` value in seconds, fractional allowed, rounded up to the millisecond."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    whole, frac = divmod(ms, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)


# -- options: the command line that configures the classes above --------------------------
def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Cross-option checks argparse cannot do; adds `fault_rates`. The namespace is the config."""
    args.fault_rates = {"429": args.rate_429, "500": args.rate_500, "reset": args.rate_reset,
                        "cut": args.rate_cut, "hang": args.rate_hang}
    if sum(args.fault_rates.values()) > 1.0 + 1e-9:
        raise ConfigError("--rate-429/500/reset/cut/hang must add up to at most 1")
    kinds = tuple(k.strip() for k in args.bad_kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(BAD_KINDS):
        raise ConfigError(f"--bad-kinds: a comma-separated list of {','.join(BAD_KINDS)}")
    args.bad_kinds = kinds
    wire = tuple(k.strip() for k in args.bad_wire_kinds.split(",") if k.strip())
    if not wire or set(wire) - set(WIRE_KINDS):
        raise ConfigError(f"--bad-wire-kinds: a comma-separated list of {','.join(WIRE_KINDS)}")
    args.bad_wire_kinds = wire
    if args.bad_tokens < 1:
        raise ConfigError("--bad-tokens must be >= 1")
    if args.rate_window_s <= 0 or min(args.tokens_per_s, args.retry_after, args.rpm, args.tpm) < 0:
        raise ConfigError("--rate-window-s must be > 0; --tokens-per-s, --retry-after, --rpm, "
                          "--tpm must be >= 0")
    return args


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:

    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, default=8000, help="port to bind; 0 picks a free one (default 8000)")
    add_account_arguments(parser)
    add("--latency-ms", type=_arg(parse_latency), default="0", metavar="SPEC",
        help="time before a response starts: 100, 50-200 or exp:100 (default 0)")
    add("--tokens-per-s", type=float, default=0.0, metavar="R",
        help="generation speed per request; 0 = instant (default 0)")
    add("--output-tokens", type=_arg(parse_length_spec), default="40-120", metavar="SPEC",
        help="answer length in tokens, N or LO-HI (default 40-120)")
    for kind, what in (("429", "answer 429 with Retry-After"), ("500", "answer 500"),
                       ("reset", "close the connection without answering"),
                       ("cut", "cut the connection halfway through the response"),
                       ("hang", "never answer until the client goes away")):
        add(f"--rate-{kind}", type=_arg(parse_fraction), default=0.0, metavar="F",
            help=f"fraction of requests to {what}")
    add("--bad-rate", type=_arg(parse_fraction), default=0.0, metavar="F",
        help="fraction of answers that are bad (drawn per arrival; default 0)")
    add("--bad-kinds", default=",".join(BAD_KINDS), metavar="K,K",
        help=f"kinds of bad answers: {','.join(BAD_KINDS)} (default all; json: for JSON "
        "requests, which get it whenever it is allowed)")
    add("--plant", type=_arg(parse_kinds), default=PLANT_KINDS, metavar="K,K",
        help=f"planted failure modes that pass the default validators: {','.join(PLANT_KINDS)} "
        "(default all; docs/mock-server.md)")
    add("--plant-rate", type=_arg(parse_fraction), default=0.0, metavar="F",
        help="fraction of answers with a planted failure, chosen by the last user message "
        "(default 0)")
    add("--bad-tokens", type=int, default=1000, metavar="N",
        help="length of a bad answer in tokens, max_tokens permitting (default 1000)")
    add("--bad-wire-rate", type=_arg(parse_fraction), default=0.0, metavar="F",
        help="fraction of answers whose wire format is broken (drawn per arrival; default 0)")
    add("--bad-wire-kinds", default=",".join(WIRE_KINDS), metavar="K,K",
        help=f"kinds of broken answers: {','.join(WIRE_KINDS)} (default all): a bad SSE "
        "event, a bad JSON body, an HTML page with 200, a null delta (message, text), a "
        "stream or body that ends early; each answer gets one that fits it")
    add("--retry-after", type=float, default=1.0, metavar="S",
        help="Retry-After seconds of injected 429s (default 1)")
    add("--seed", type=int, default=0, help="seed of the fault and latency draws (default 0)")
    add("--rpm", type=int, default=0, help="enforced requests per window; 0 = off")
    add("--tpm", type=int, default=0, help="enforced tokens per window; 0 = off")
    add("--rate-window-s", type=float, default=60.0, metavar="W",
        help="sliding window of --rpm/--tpm and of the /stats maxima (default 60)")
    add("--cached-prompt-fraction", type=_arg(parse_fraction), default=0.0, metavar="F",
        help="report this share of each prompt's tokens as served from a prompt cache "
        "(usage.prompt_tokens_details.cached_tokens, rounded down; default 0: none)")
    add("--record-arrivals", action="store_true", help="list arrival times in /stats")
    add("--vary", action="store_true", help="answers differ per arrival (like a sampling "
        "model), not a function of the request")
    add("--no-uvloop", action="store_true", help="use the default asyncio event loop")
    add("--fast", action="store_true", help="HTTP on a raw asyncio protocol instead of "
        "aiohttp's server, for benchmarks: plain answers after --latency-ms only")
