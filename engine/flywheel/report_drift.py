"""The report's drift panel: agreement with the humans per bucket of labels in time order, and
the flag when the newest labels would select other assertions (data: flywheel/drift.py)."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from gristmill.flywheel.report_svg import empty_note, interval_chart


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def drift_panel(drift: dict[str, Any] | None) -> str:
    if not drift:
        return empty_note("No labels yet: `gristmill review RUN` collects them.")
    rows, lows = [], [0.0]
    for bucket in drift["buckets"]:
        name = f'labels {bucket["first"]}–{bucket["last"]}'
        for tone, key in ((0, "judge"), (2, "assertions")):
            block = bucket[key]
            if block:
                lo, hi = block["accuracy_ci"]
                rows.append((f"{name} · {key}", block["accuracy"], lo, hi, tone))
                lows.append(lo)
    spans = " · ".join(f'{b["first"]}–{b["last"]}: {_when(b["from"])} to {_when(b["until"])}'
                       for b in drift["buckets"])
    note = (f'<p class="note">Accuracy against the {drift["labels"]:,} human labels in time '
            f'order, per bucket of consecutive labels (UTC: {escape(spans)}), with 95% intervals; '
            f'judge in one colour, the assertions of {escape(drift["file"] or "no file")} in '
            'another.</p>')
    chart = interval_chart(rows, label="agreement over label time", lo=min(lows)) if rows \
        else empty_note("No labelled record has a judge verdict or an assertion file.")
    return note + chart + _flag(drift.get("newest_half"))


def _flag(half: dict[str, Any] | None) -> str:
    if half is None:
        return ""
    if half.get("differs"):
        detail = half.get("note") or (
            f'it would add {", ".join(half["added"]) or "none"} and drop '
            f'{", ".join(half["dropped"]) or "none"}')
        return (f'<p class="flag" id="drift-flag">Drift: the newest {half["labels"]} labels '
                f'would select a different set of assertions than the file holds; '
                f'{escape(detail)}. Run `gristmill assertions suggest RUN` again.</p>')
    return (f'<p class="note" id="drift-flag">The newest {half["labels"]} labels select the '
            f'same assertions as the file{escape(": " + half["note"] if half.get("note") else "")}'
            '.</p>')
