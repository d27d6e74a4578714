"""Small inline SVG charts for the run report: lines over time, horizontal bars, intervals.

Plain functions from numbers to SVG text; every label is escaped (skill names, stage names and
reasons come from configs and model answers)."""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

WIDTH = 560
COLORS = ("#2f6fbd", "#cf222e", "#1a7f37", "#8250df", "#bf8700")
Point = tuple[float, float]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 10) for i in range(count + 2) if first + i * step <= hi + step / 2]


def fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"


def _svg(height: int, body: list[str], label: str) -> str:
    return (f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {WIDTH} '
            f'{height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            + "".join(body) + "</svg>")


def line_chart(series: Sequence[tuple[str, Sequence[Sequence[Point]]]], *, x_label: str,
               y_label: str, label: str, y_range: tuple[float, float] | None = None) -> str:
    """Lines (each a list of segments, broken between segments) with axes and a legend."""
    height, left, right, top, bottom = 240, 52, 12, 26, 38
    points = [p for _, segments in series for seg in segments for p in seg]
    if not points:
        return empty_note("No data points yet.")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = y_range or (min(0.0, min(ys)), max(ys) * 1.08 or 1.0)
    ticks = nice_ticks(y0, y1)
    y0, y1 = min(y0, ticks[0]), max(y1, ticks[-1])
    sx = lambda x: left + (x - x0) / (x1 - x0) * (WIDTH - left - right)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)  # noqa: E731
    body = [_axes(left, right, top, bottom, height)]
    for tick in ticks:
        body.append(f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{sy(tick):.1f}" '
                    f'y2="{sy(tick):.1f}"/><text class="tick" x="{left - 6}" y="{sy(tick) + 4:.1f}" '
                    f'text-anchor="end">{fmt(tick)}</text>')
    for tick in nice_ticks(x0, x1, 6):
        if x0 <= tick <= x1:
            body.append(f'<text class="tick" x="{sx(tick):.1f}" y="{height - bottom + 16}" '
                        f'text-anchor="middle">{fmt(tick)}</text>')
    for index, (name, segments) in enumerate(series):
        color = COLORS[index % len(COLORS)]
        for seg in segments:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in seg)
            body.append(f'<polyline class="series" fill="none" stroke="{color}" '
                        f'stroke-width="2" points="{path}"/>')
            if len(seg) == 1:
                body.append(f'<circle cx="{sx(seg[0][0]):.1f}" cy="{sy(seg[0][1]):.1f}" r="3" '
                            f'fill="{color}"/>')
        body.append(f'<rect x="{left + 8 + index * 150}" y="8" width="10" height="10" '
                    f'fill="{color}"/><text class="legend" x="{left + 22 + index * 150}" y="17">'
                    f'{escape(name)}</text>')
    body.append(f'<text class="axis-label" x="{(left + WIDTH - right) / 2}" y="{height - 4}" '
                f'text-anchor="middle">{escape(x_label)}</text>'
                f'<text class="axis-label" x="12" y="{(top + height - bottom) / 2}" '
                f'transform="rotate(-90 12 {(top + height - bottom) / 2})" text-anchor="middle">'
                f'{escape(y_label)}</text>')
    return _svg(height, body, label)


def _axes(left: int, right: int, top: int, bottom: int, height: int) -> str:
    return (f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}"/>'
            f'<line class="axis" x1="{left}" x2="{WIDTH - right}" y1="{height - bottom}" '
            f'y2="{height - bottom}"/>')


def bar_chart(rows: Sequence[tuple[str, float, str]], *, label: str, maximum: float | None = None,
              color: str = COLORS[0]) -> str:
    """Horizontal bars: (name, value, text shown after the bar)."""
    if not rows:
        return empty_note("Nothing to show.")
    row_h, name_w, text_w = 24, 210, 110
    top = max(maximum or 0.0, max(v for _, v, _ in rows)) or 1.0
    span = WIDTH - name_w - text_w
    body = []
    for i, (name, value, text) in enumerate(rows):
        y = 4 + i * row_h
        shown = name if len(name) <= 32 else name[:31] + "…"
        body.append(f'<text class="bar-name" x="{name_w - 8}" y="{y + 15}" text-anchor="end">'
                    f'<title>{escape(name)}</title>{escape(shown)}</text>'
                    f'<rect class="bar-track" x="{name_w}" y="{y + 3}" width="{span}" height="16"/>'
                    f'<rect class="bar" x="{name_w}" y="{y + 3}" width="{max(value, 0) / top * span:.1f}" '
                    f'height="16" fill="{color}"/><text class="bar-value" x="{name_w + span + 8}" '
                    f'y="{y + 15}">{escape(text)}</text>')
    return _svg(8 + len(rows) * row_h, body, label)


def interval_chart(rows: Sequence[tuple[str, float, float, float, int]], *, label: str,
                   lo: float = 0.0, hi: float = 1.0) -> str:
    """Estimates with confidence intervals: (name, value, ci_lo, ci_hi, color index)."""
    if not rows:
        return empty_note("Nothing to show.")
    row_h, name_w, right = 26, 150, 70
    span = WIDTH - name_w - right
    sx = lambda v: name_w + (min(max(v, lo), hi) - lo) / (hi - lo) * span  # noqa: E731
    height = 24 + len(rows) * row_h
    body = []
    for tick in nice_ticks(lo, hi, 4):
        if lo <= tick <= hi:
            body.append(f'<line class="grid" x1="{sx(tick):.1f}" x2="{sx(tick):.1f}" y1="2" '
                        f'y2="{height - 20}"/><text class="tick" x="{sx(tick):.1f}" '
                        f'y="{height - 6}" text-anchor="middle">{fmt(tick)}</text>')
    for i, (name, value, ci_lo, ci_hi, tone) in enumerate(rows):
        y, color = 4 + i * row_h + 12, COLORS[tone % len(COLORS)]
        body.append(f'<text class="bar-name" x="{name_w - 8}" y="{y + 4}" text-anchor="end">'
                    f'{escape(name)}</text><line x1="{sx(ci_lo):.1f}" x2="{sx(ci_hi):.1f}" '
                    f'y1="{y}" y2="{y}" stroke="{color}" stroke-width="2"/>'
                    f'<circle class="estimate" cx="{sx(value):.1f}" cy="{y}" r="5" fill="{color}"/>'
                    f'<text class="bar-value" x="{WIDTH - right + 8}" y="{y + 4}">{fmt(value)}</text>')
    return _svg(height, body, label)


def empty_note(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'
