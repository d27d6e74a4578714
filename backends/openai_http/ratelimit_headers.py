"""Reading a server's rate-limit hints: `x-ratelimit-*` headers and `Retry-After`."""

from __future__ import annotations

import re
from typing import Mapping

from gristmill.protocol import RateHints

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """'1s', '6m0s', '20ms', '1.5' (plain seconds) -> seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts:
        return None
    return sum(float(n) * _UNIT_S[unit] for n, unit in parts)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def parse_rate_headers(headers: Mapping[str, str]) -> RateHints | None:
    if "x-ratelimit-limit-requests" not in headers and "x-ratelimit-limit-tokens" not in headers:
        return None
    return RateHints(
        _int(headers.get("x-ratelimit-limit-requests")),
        _int(headers.get("x-ratelimit-remaining-requests")),
        parse_duration(headers.get("x-ratelimit-reset-requests")),
        _int(headers.get("x-ratelimit-limit-tokens")),
        _int(headers.get("x-ratelimit-remaining-tokens")),
        parse_duration(headers.get("x-ratelimit-reset-tokens")),
    )


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    # Only the delta-seconds form; an HTTP date from an API server is rare and
    # the exponential backoff covers it.
    return parse_duration(headers.get("retry-after"))
