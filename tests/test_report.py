"""`gristmill report RUN`: the timeline the runner keeps, the numbers, and the page itself in
headless Chromium (self-contained: it fetches nothing; every plot is drawn)."""

from __future__ import annotations

import json
import subprocess
import sys

from playwright.sync_api import Page, expect

from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.report import render
from gristmill.flywheel.report_data import gather, read_timeline, throughput

from .conftest import ROOT
from .review_support import make_run, records_of

AGREEMENT = {
    "judge_version": "judge-test-v2", "computed_at": 1_800_000_000,
    "overall": {"n": 40, "accuracy": 0.85, "accuracy_ci": [0.71, 0.93], "kappa": 0.68,
                "kappa_ci": [0.45, 0.86], "tpr_fail": 0.8, "tpr_fail_ci": [0.55, 0.93],
                "tnr_fail": 0.88, "tnr_fail_ci": [0.7, 0.96]},
    "before": {"n": 40, "accuracy": 0.65, "accuracy_ci": [0.5, 0.78], "kappa": 0.22,
               "kappa_ci": [-0.05, 0.48], "tpr_fail": 0.4, "tpr_fail_ci": [0.2, 0.63],
               "tnr_fail": 0.85, "tnr_fail_ci": [0.66, 0.94]},
    "trend": [{"until": 1_800_000_000 + 3600 * i, "n": 10 * (i + 1), "accuracy": 0.6 + 0.08 * i,
               "kappa": 0.1 + 0.18 * i} for i in range(4)]}


def report(run_dir) -> str:
    out = subprocess.run([sys.executable, "-m", "gristmill", "report", str(run_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(run_dir / "report.html")
    return (run_dir / "report.html").read_text()


def test_the_runner_appends_a_timeline_point_per_interval_and_session(mock_server_factory,
                                                                      tmp_path):
    mock = mock_server_factory("--latency-ms", "40")
    run_dir = make_run(mock.base_url, tmp_path, judged=False, state_interval_s=0.05)
    first = read_timeline(run_dir / "timeline.jsonl")
    assert len(first) >= 3 and first[-1]["status"] == "finished"
    assert first[-1]["records"] == len(records_of(run_dir))
    assert [p["records"] for p in first] == sorted(p["records"] for p in first)
    make_run(mock.base_url, tmp_path, judged=False, state_interval_s=0.05)  # resumes
    both = read_timeline(run_dir / "timeline.jsonl")
    assert both[:len(first)] == first and len(both) > len(first)
    assert len({p["session"] for p in both}) == 2
    assert both[-1]["records"] == first[-1]["records"]  # nothing was written twice


def test_throughput_is_a_rate_per_session_with_a_gap_between_sessions():
    points = [{"t": 100.0 + 2 * i, "session": 1.0, "records": 10 * i, "rejects": i}
              for i in range(10)]
    points += [{"t": 500.0 + 2 * i, "session": 2.0, "records": 90 + 5 * i, "rejects": 9}
               for i in range(10)]
    series = throughput(points)
    assert len(series["records"]) == 2  # one segment per session
    assert all(abs(rate - 5.0) < 1e-9 for _, rate in series["records"][0])
    assert all(abs(rate - 2.5) < 1e-9 for _, rate in series["records"][1])
    assert all(rate == 0 for _, rate in series["rejects"][1])
    assert series["records"][1][0][0] > series["records"][0][-1][0]  # seconds since the start
    assert series["records"][0][0][0] == 2.0
    assert throughput([]) == {"records": [], "rejects": []}


def test_the_report_renders_and_contains_its_plots(page: Page, mock_server_factory, tmp_path):
    mock = mock_server_factory("--bad-rate", "0.4")
    run_dir = make_run(mock.base_url, tmp_path, regenerate=False, state_interval_s=0.05)
    records = records_of(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rejects_by_reason"], "the bad-answer mock should have caused rejects"
    with LabelStore(run_dir / "run.sqlite") as store:
        for record in records[:6]:
            store.add(record["id"], True, "fine")
    (run_dir / "judge").mkdir()
    (run_dir / "judge" / "agreement.json").write_text(json.dumps(AGREEMENT))
    html = report(run_dir)
    assert "<script" not in html and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto((run_dir / "report.html").as_uri())
    assert requests == [(run_dir / "report.html").as_uri()]  # self-contained
    for panel, plots in [("throughput", 1), ("funnel", 1), ("rejections", 2), ("judge", 2),
                         ("agreement", 2)]:
        charts = page.locator(f"#{panel} svg.chart")
        expect(charts).to_have_count(plots)
        for i in range(plots):
            box = charts.nth(i).bounding_box()
            assert box and box["width"] > 200 and box["height"] > 20, panel
    assert page.locator("#throughput polyline.series").count() >= 1
    reasons = summary["rejects_by_reason"]
    expect(page.locator("#rejections svg.chart").first.locator("rect.bar")).to_have_count(
        len(reasons))
    for reason in reasons:
        expect(page.locator("#rejections")).to_contain_text(reason)
    funnel = page.locator("#funnel")
    expect(funnel).to_contain_text(f"{summary['seeds']:,}")
    expect(funnel).to_contain_text("records (output.jsonl)")
    passed = sum(r["judge"]["passed"] for r in records)
    expect(page.locator("#judge")).to_contain_text(f"{round(100 * passed / len(records))}% passed")
    faithful = sum(r["judge"]["criteria"]["faithful"]["passed"] for r in records)
    expect(page.locator("#judge")).to_contain_text(
        f"{round(100 * faithful / len(records))}% of {len(records)}")
    agreement = page.locator("#agreement")
    expect(agreement).to_contain_text("0.68 [0.45, 0.86]")
    expect(agreement).to_contain_text("judge judge-test-v2 on 40 held-out labels")
    expect(agreement).to_contain_text("6 human labels (6 pass)")
    expect(page.locator("#agreement circle.estimate")).to_have_count(8)
    expect(page.locator("#tiles")).to_contain_text(f"{len(records)}")


def test_a_run_without_judge_or_alignment_says_so(mock_server_factory, tmp_path):
    mock = mock_server_factory()
    run_dir = make_run(mock.base_url, tmp_path, judged=False)
    html = report(run_dir)
    assert "No judge verdicts on this run" in html
    assert "No alignment has been run" in html
    assert "No rejections." in html


def test_names_from_configs_and_answers_are_escaped(mock_server_factory, tmp_path):
    mock = mock_server_factory()
    run_dir = make_run(mock.base_url, tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["rejects_by_reason"] = {"answer1: <script>alert(1)</script>": 3}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    html = render(gather(run_dir))
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_run_still_going_is_reported_from_its_state_and_rejects(mock_server_factory, tmp_path):
    mock = mock_server_factory("--bad-rate", "0.4")
    run_dir = make_run(mock.base_url, tmp_path, regenerate=False)
    reasons = json.loads((run_dir / "summary.json").read_text())["rejects_by_reason"]
    (run_dir / "summary.json").unlink()  # as while a run works: only state.json so far
    data = gather(run_dir)
    assert data["rejects_by_reason"] == reasons  # counted from rejects.jsonl instead
    html = render(data)
    assert "stage question" in html and "stage answer1" in html
