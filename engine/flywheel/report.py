"""`gristmill report RUN`: RUN/report.html, one self-contained page (inline SVG and CSS, no
scripts, nothing fetched) that shows a run's health at a glance."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from typing import Any

from gristmill.dataset.files import write_atomic
from gristmill.flywheel.report_data import gather
from gristmill.flywheel.report_drift import drift_panel
from gristmill.flywheel.report_svg import bar_chart, empty_note, interval_chart, line_chart

CSS = Path(__file__).parent / "static" / "report.css"
METRICS = (("accuracy", "accuracy"), ("kappa", "Cohen's κ"),
           ("tpr_fail", "failures caught"), ("tnr_fail", "passes kept"))
MAX_BARS = 14
MIN_TYPE_RECORDS = 5


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    out = out or run_dir / "report.html"
    write_atomic(out, render(gather(run_dir)).encode())
    return out


def render(data: dict[str, Any]) -> str:
    sections = [_panel("throughput", "Throughput over time", _throughput(data)),
                _panel("funnel", "Stage funnel", _funnel(data)),
                _panel("rejections", "Rejection reasons", _rejections(data)),
                _panel("coverage", "Records per skill / type", _coverage(data)),
                _panel("judge", "Judge pass rate per skill / type", _judge(data)),
                _panel("agreement", "Judge–human agreement", _agreement(data)),
                _panel("drift", "Drift over label time", drift_panel(data["drift"]))]
    status = (data["state"].get("status") or ("finished" if data["summary"] else "unknown"))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>gristmill report '
            f'· {escape(data["name"])}</title><meta name="viewport" content="width=device-width">'
            f'<style>{CSS.read_text(encoding="utf-8")}</style></head><body><header><h1>Run '
            f'report · {escape(data["name"])}</h1><p class="sub">status {escape(status)} · '
            f'written {time.strftime("%Y-%m-%d %H:%M:%S")}</p></header>{_tiles(data)}'
            f'<main>{"".join(sections)}</main></body></html>\n')


def _panel(key: str, title: str, body: str) -> str:
    return f'<section class="panel" id="{key}"><h2>{escape(title)}</h2>{body}</section>'


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "–"


def _tiles(data: dict[str, Any]) -> str:
    summary = data["summary"] or {}
    judge, labels = data["judge"], data["labels"]
    rejects = sum(data["rejects_by_reason"].values())
    tiles = [("seeds", f'{summary.get("seeds", data["state"].get("seeds_admitted", 0)):,}', ""),
             ("records", f'{data["records"]:,}', ""),
             ("dataset", "–" if data["dataset"] is None else f'{data["dataset"]:,}',
              "after dedup"),
             ("rejects", f"{rejects:,}", f'{_pct(rejects, rejects + data["records"])} of outcomes'),
             ("records / s", f'{summary.get("records_per_s", 0):,.1f}',
              f'{summary.get("elapsed_s", 0):,.0f} s'),
             ("tokens", f'{summary.get("tokens", 0):,}', "")]
    cost = summary.get("cost_usd") or data["state"].get("cost_usd")
    if cost is not None:  # null: no model priced
        budget = cost.get("budget")
        tiles.append(("spent", f'${cost["total"]:,.4f}', f'of ${budget["cap_usd"]:,.2f} budget'
                      if budget else "all sessions"))
    if judge.judged:
        tiles.append(("judge pass", _pct(judge.passed, judge.judged), f"of {judge.judged:,}"))
    tiles.append(("labels", f'{labels["labelled"]:,}', f'{labels["passed"]:,} pass'))
    overall = (data["agreement"] or {}).get("overall") or {}
    if overall.get("kappa") is not None:
        tiles.append(("judge–human κ", f'{overall["kappa"]:.2f}', f'n = {overall.get("n", 0)}'))
    cells = "".join(f'<div class="tile"><div class="tile-name">{escape(n)}</div><div '
                    f'class="tile-value">{escape(v)}</div><div class="tile-note">{escape(note)}'
                    f'</div></div>' for n, v, note in tiles)
    return f'<div class="tiles" id="tiles">{cells}</div>'


def _throughput(data: dict[str, Any]) -> str:
    series = data["throughput"]
    if not any(series.values()):
        return empty_note("No timeline yet: timeline.jsonl gets a point every few seconds "
                          "while a run works.")
    span = max(x for segments in series.values() for seg in segments for x, _ in seg)
    unit, scale = next((u, s) for u, s, upto in (("seconds", 1, 180), ("minutes", 60, 3 * 3600),
                                                  ("hours", 3600, float("inf"))) if span <= upto)
    scaled = {name: [[(x / scale, y) for x, y in seg] for seg in segments]
              for name, segments in series.items()}
    return line_chart([("records / s", scaled["records"]), ("rejects / s", scaled["rejects"])],
                      x_label=f"{unit} since the run began", y_label="per second",
                      label="throughput over time")


def _funnel(data: dict[str, Any]) -> str:
    summary = data["summary"] or {}
    seeds = summary.get("seeds", data["state"].get("seeds_admitted", 0))
    rows = [("seeds admitted", seeds, f"{seeds:,}")]
    for stage in summary.get("stages") or data["state"].get("stages") or []:
        rows.append((f'stage {stage["name"]}', stage["emitted"],
                     f'{stage["emitted"]:,} out · {stage["failed"]:,} failed'))
    rows.append(("records (output.jsonl)", data["records"], f'{data["records"]:,}'))
    if data["dataset"] is not None:
        rows.append(("dataset.jsonl (dedup)", data["dataset"], f'{data["dataset"]:,}'))
    if data["judge"].judged:
        rows.append(("judge passed", data["judge"].passed, f'{data["judge"].passed:,}'))
    for name, count in data["flywheel"]:
        rows.append((name, count or 0, f"{count or 0:,}"))
    return bar_chart(rows, label="stage funnel")


def _rejections(data: dict[str, Any]) -> str:
    parts = ['<h3>work rejected for good (rejects.jsonl), by stage and reason</h3>',
             _reason_bars(data["rejects_by_reason"], "rejection reasons")]
    validation = (data["summary"] or {}).get("validation") or {}
    if validation.get("rejected_by_validator"):
        parts += ['<h3>answers a validator rejected, regenerated or not</h3>',
                  _reason_bars(validation["rejected_by_validator"], "validator rejections"),
                  f'<p class="note">{validation.get("streams_aborted", 0):,} streams stopped '
                  f'early · ~{validation.get("tokens_saved_estimate", 0):,} tokens not '
                  'generated</p>']
    return "".join(parts)


def _coverage(data: dict[str, Any]) -> str:
    """Records per skill and per taxonomy type (output.jsonl, all sessions): a thin type
    is where the data is short of what the skill's taxonomy promises."""
    coverage = data["coverage"]
    if not coverage["by_skill"]:
        return empty_note("No record names a skill (a staged pipeline).")
    total = sum(coverage["by_skill"].values())
    skills = sorted(coverage["by_skill"].items(), key=lambda kv: -kv[1])
    types = sorted(coverage["by_type"].items(), key=lambda kv: kv[1])
    return ('<h3>per skill</h3>' + bar_chart([(name, n, f"{n:,} · {_pct(n, total)}")
                                              for name, n in skills], label="records per skill")
            + f'<h3>the {min(MAX_BARS, len(types))} thinnest of {len(types)} types</h3>'
            + bar_chart([(name, n, f"{n:,}") for name, n in types[:MAX_BARS]],
                        label="records per type"))


def _reason_bars(counts: dict[str, int], label: str) -> str:
    reasons = sorted(counts.items(), key=lambda kv: -kv[1])
    if not reasons:
        return empty_note("No rejections.")
    shown = reasons[:MAX_BARS]
    rest = sum(count for _, count in reasons[MAX_BARS:])
    if rest:
        shown.append((f"{len(reasons) - MAX_BARS} other reasons", rest))
    total = sum(count for _, count in reasons)
    return bar_chart([(name, count, f"{count:,} · {_pct(count, total)}")
                      for name, count in shown], label=label, color="#cf222e")


def _rates(table: dict[str, list[int]], min_n: int = 1) -> list[tuple[str, float, str]]:
    """Pass rates, lowest first, of the groups with at least `min_n` records."""
    rows = sorted(((k, v) for k, v in table.items() if v[1] >= min_n),
                  key=lambda kv: (kv[1][0] / kv[1][1], kv[0]))[:MAX_BARS]
    return [(name, passed / n, f"{_pct(passed, n)} of {n:,}") for name, (passed, n) in rows]


def _type_min_n(table: dict[str, list[int]]) -> int:
    """Types with few records have meaningless rates: show those with a fair share."""
    sizes = sorted(n for _, n in table.values())
    return min(MIN_TYPE_RECORDS, sizes[-1]) if sizes else 1


def _judge(data: dict[str, Any]) -> str:
    judge = data["judge"]
    if not judge.judged:
        return empty_note("No judge verdicts on this run's records (the run has no judge "
                          "stage).")
    versions = ", ".join(f"{escape(v)} ({n:,})" for v, n in judge.versions.most_common())
    parts = [f'<p class="note">{judge.judged:,} records judged by {versions}; '
             f'{_pct(judge.passed, judge.judged)} passed. Lowest pass rates first.</p>',
             '<h3>per skill</h3>', bar_chart(_rates(judge.by_skill), maximum=1.0,
                                             label="judge pass rate per skill")]
    if judge.by_type:
        min_n = _type_min_n(judge.by_type)
        parts += [f'<h3>per type (types with at least {min_n} records)</h3>',
                  bar_chart(_rates(judge.by_type, min_n), maximum=1.0,
                            label="judge pass rate per type", color="#2f6fbd")]
    if judge.by_criterion:
        parts += ['<h3>per criterion</h3>', bar_chart(_rates(judge.by_criterion), maximum=1.0,
                                                      label="judge pass rate per criterion",
                                                      color="#8250df")]
    return "".join(parts)


def _agreement(data: dict[str, Any]) -> str:
    labels = data["labels"]
    raw = (f'<p class="note">{labels["labelled"]:,} human labels ({labels["passed"]:,} pass). ' +
           (f'Of the {labels["both"]:,} records both judged and labelled, the judge agrees on '
            f'{labels["agree"]:,} ({_pct(labels["agree"], labels["both"])}).' if labels["both"]
            else "None of the labelled records has a judge verdict.") + '</p>')
    agreement = data["agreement"]
    if not agreement:
        return raw + empty_note("No alignment has been run: `gristmill judge align RUN` "
                                "measures agreement with confidence intervals.")
    overall, before = agreement.get("overall") or {}, agreement.get("before") or {}
    rows, lows = [], [0.0]
    for key, name in METRICS:
        for tone, (which, block) in ((4, ("before", before)), (0, ("now", overall))):
            if block.get(key) is not None:
                lo, hi = block.get(f"{key}_ci") or (block[key], block[key])
                rows.append((f"{name} · {which}", block[key], lo, hi, tone))
                lows.append(lo)
    chart = interval_chart(rows, label="agreement with 95% intervals", lo=min(lows))
    return (raw + f'<p class="note">judge {escape(str(agreement.get("judge_version", "?")))} on '
            f'{overall.get("n", 0):,} held-out labels; dots are estimates, lines their '
            f'confidence intervals.</p>' + chart + _table(overall, before) + _trend(agreement))


def _table(overall: dict[str, Any], before: dict[str, Any]) -> str:
    def cell(block: dict[str, Any], key: str) -> str:
        if block.get(key) is None:
            return "–"
        lo, hi = block.get(f"{key}_ci") or (None, None)
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None else ""
        return f"{block[key]:.2f}{ci}"

    rows = "".join(f"<tr><th>{escape(name)}</th><td>{cell(before, key)}</td>"
                   f"<td>{cell(overall, key)}</td></tr>" for key, name in METRICS)
    return (f'<table class="metrics"><tr><th></th><th>before alignment</th><th>now</th></tr>'
            f'{rows}</table>')


def _trend(agreement: dict[str, Any]) -> str:
    trend = [t for t in agreement.get("trend") or [] if t.get("until") is not None]
    if not trend:
        return empty_note("No agreement trend yet.")
    start = trend[0]["until"]
    days = (trend[-1]["until"] - start) > 2 * 86400
    unit, scale = ("days", 86400) if days else ("hours", 3600)
    series = [(name, [[((t["until"] - start) / scale, t[key]) for t in trend
                       if t.get(key) is not None]]) for key, name in
              (("accuracy", "accuracy"), ("kappa", "κ"))]
    return ('<h3>trend over label time</h3>' +
            line_chart(series, x_label=f"label time ({unit} since the first window)",
                       y_label="agreement", label="agreement trend",
                       y_range=(min(0.0, *(t.get("kappa") or 0 for t in trend)), 1.0)))
