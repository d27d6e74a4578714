"""A run's Prometheus /metrics (`--metrics-port`): scraped over HTTP while a run against the
mock server process lasts and after its end, parsed with prometheus_client's own parser, the
final values equal summary.json; the endpoint closes with the run, leaving nothing behind; a
resume keeps the port; the Grafana dashboard names only metrics the run exposes."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gristmill.cli.main import main
from gristmill.config.load import validate_config
from gristmill.runs.options import RunOptions, kept_settings, with_kept_settings
from gristmill.runs.runner import Run, run
from tests.conftest import ROOT, pipeline_config

DASHBOARD = ROOT / "configs" / "dashboards" / "gristmill.json"
# 500s (retried, some given up on), bad answers (validators reject), a little latency
FAULTS = ("--latency-ms", "10", "--rate-500", "0.3", "--bad-rate", "0.3", "--seed", "7")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> tuple[Samples, set[str]]:
    """Samples by name, and every name a PromQL expression may use (a histogram's family
    name is no series: its _bucket, _sum and _count are)."""
    samples: Samples = defaultdict(list)
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in {"counter": ("_total",), "gauge": ("",),
                                            "histogram": ("_bucket", "_sum", "_count")}
                  [family.type]}
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples, names


def by(samples: Samples, name: str, *labels: str) -> dict[Any, float]:
    return {tuple(s[k] for k in labels) if len(labels) != 1 else s[labels[0]]: v
            for s, v in samples[name]}


def config_for(base_url: str, tmp_path: Path, seeds: int) -> Any:
    data = pipeline_config(base_url, tmp_path, seeds=seeds, max_in_flight=4)
    data["stages"][1]["stream"] = True  # the first-token histogram
    data["backends"]["default"]["retry"] = {"max_attempts": 2, "base_s": 0.01}  # some give up
    return validate_config(data)


async def scrape(session: aiohttp.ClientSession, port: int) -> str:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        return await resp.text()


async def run_and_scrape(config: Any, run_dir: Path, port: int, limit: int | None = None
                         ) -> tuple[list[str], str, dict[str, Any]]:
    """Run with /metrics on `port`, scraping it until summary.json is written (then once
    more), then end the linger: (the scrapes during the run, the last one, the summary)."""
    summary_path = run_dir / "summary.json"
    summary_path.unlink(missing_ok=True)  # a resumed run's earlier summary
    options = RunOptions(run_dir=run_dir, limit=limit, progress=False, metrics_port=port,
                         metrics_linger_s=600)
    task = asyncio.create_task(run(config, options))
    during: list[str] = []
    async with aiohttp.ClientSession() as session:
        while not summary_path.exists():
            if not task.done() and listening(port):
                during.append(await scrape(session, port))
            assert not task.done(), task.result()
            await asyncio.sleep(0.02)
        last = await scrape(session, port)
    task.cancel()  # the linger: the summary is on disk, the run is over
    with pytest.raises(asyncio.CancelledError):
        await task
    return during, last, json.loads(summary_path.read_text())


def assert_equal_to_summary(samples: Samples, summary: dict[str, Any]) -> None:
    one = lambda name: samples[name][0][1]  # noqa: E731
    assert one("gristmill_records_written_total") == summary["records"]
    assert one("gristmill_seeds_admitted_total") == summary["seeds"]
    assert one("gristmill_records_resumed") == summary["resumed_records"]
    assert {f"{stage}: {reason}": v for (stage, reason), v in
            by(samples, "gristmill_rejects_total", "stage", "reason").items()} == \
        summary["rejects_by_reason"]
    assert by(samples, "gristmill_validator_rejections_total", "validator") == \
        summary["validation"]["rejected_by_validator"]
    assert by(samples, "gristmill_stage_done_total", "stage") == \
        {s["name"]: s["done"] for s in summary["stages"]}
    assert sum(by(samples, "gristmill_cache_hits_total", "backend").values()) == \
        summary["cache"]["hits"]
    assert sum(by(samples, "gristmill_cache_misses_total", "backend").values()) == \
        summary["cache"]["misses"]
    (labels, value), = samples["gristmill_run_status"]
    assert value == 1 and labels == {"status": summary["status"],
                                     "stop_reason": summary["stop_reason"]}
    outcomes = by(samples, "gristmill_requests_total", "backend", "outcome")
    for name, backend in summary["backends"].items():
        mine = {o: v for (b, o), v in outcomes.items() if b == name}
        assert sum(mine.values()) == backend["requests"]
        assert {o: v for o, v in mine.items() if o not in ("ok", "aborted") and v} == \
            backend["errors"]
        assert mine["ok"] == by(samples, "gristmill_request_duration_seconds_count",
                                "backend")[name]
        assert sum(v for (b, _), v in by(samples, "gristmill_retries_total", "backend",
                                         "reason").items() if b == name) == backend["retries"]
        assert by(samples, "gristmill_prompt_tokens_total", "backend")[name] == \
            backend["prompt_tokens"]
        assert by(samples, "gristmill_completion_tokens_total", "backend")[name] == \
            backend["completion_tokens"]
        assert by(samples, "gristmill_backend_in_flight", "backend")[name] == 0
    endpoints = by(samples, "gristmill_endpoint_requests_total", "backend", "endpoint",
                   "outcome")
    assert sum(endpoints.values()) == sum(b["requests"] for b in summary["backends"].values())


async def test_scraped_counters_equal_the_summary_during_and_after_a_run(
        mock_server_factory, tmp_path):
    mock = mock_server_factory(*FAULTS)
    config = config_for(mock.base_url, tmp_path, seeds=30)
    port, run_dir = free_port(), tmp_path / "run"
    during, last, summary = await run_and_scrape(config, run_dir, port, limit=20)
    assert during, "no scrape while the run lasted"
    first, _ = parse(during[0])
    assert by(first, "gristmill_run_status", "status") == {"running": 1}
    samples, _ = parse(last)
    assert_equal_to_summary(samples, summary)
    # the faults happened, so the equalities above compared something
    assert summary["rejects"] and summary["backends"]["default"]["retries"]
    assert summary["validation"]["rejected_by_validator"]
    assert by(samples, "gristmill_time_to_first_token_seconds_count", "backend")["default"]
    # counters only grow from scrape to scrape
    previous: dict[Any, float] = {}
    for text in [*during, last]:
        now = {(name, tuple(sorted(labels.items()))): v for name, rows in parse(text)[0].items()
               if name.endswith("_total") for labels, v in rows}
        assert [(key, v, now.get(key)) for key, v in previous.items() if now.get(key, 0) < v] == []
        previous = now
    assert not listening(port)

    # a second session replays the first one's answers from the cache
    during, last, summary = await run_and_scrape(config, run_dir, port, limit=30)
    assert summary["cache"]["hits"] and summary["resumed_records"]
    assert_equal_to_summary(parse(last)[0], summary)


async def test_the_endpoint_closes_with_the_run_and_leaves_nothing_behind(
        mock_server_factory, tmp_path):
    mock = mock_server_factory("--latency-ms", "5")
    config = config_for(mock.base_url, tmp_path, seeds=4)
    port = free_port()
    threads = set(threading.enumerate())
    seen: list[Run] = []
    options = RunOptions(run_dir=tmp_path / "run", progress=False, metrics_port=port,
                         metrics_linger_s=0.2, on_start=seen.append)
    task = asyncio.create_task(run(config, options))
    async with aiohttp.ClientSession() as session:
        while not seen or seen[0].stats.records == 0:
            await asyncio.sleep(0.01)
        assert "gristmill_records_written_total" in await scrape(session, port)
    summary = await task  # the run ends after its linger
    assert summary["stop_reason"] == "complete"
    assert not listening(port)
    assert not [c for c in psutil.Process().net_connections("tcp") if c.laddr.port == port]
    new = set(threading.enumerate()) - threads  # the loop's executor (the store) aside
    assert not [t.name for t in new if not t.name.startswith(("uvloop_", "asyncio_"))]
    assert asyncio.all_tasks() == {asyncio.current_task()}


def test_resume_keeps_the_metrics_port(mock_server, tmp_path):
    assert kept_settings(RunOptions(limit=3, metrics_port=9100, metrics_host="0.0.0.0")) == \
        {"limit": 3, "metrics_port": 9100, "metrics_host": "0.0.0.0"}
    assert with_kept_settings(RunOptions(), {"metrics_port": 9100}).metrics_port == 9100
    assert with_kept_settings(RunOptions(metrics_port=0), {"metrics_port": 9100}
                              ).metrics_port == 0  # 0: none

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(pipeline_config(mock_server.base_url, tmp_path, seeds=4)))
    run_dir, port = tmp_path / "run", free_port()

    def gristmill(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gristmill", *args, "--no-progress"],
                              capture_output=True, text=True, timeout=120)

    done = gristmill("run", str(path), "--run-dir", str(run_dir), "--limit", "2",
                     "--metrics-port", str(port))
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "settings.json").read_text())["metrics_port"] == port
    with socket.socket() as taken:  # the resume must serve on the kept port: taken, it fails
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = gristmill("resume", str(run_dir))
    assert done.returncode == 2 and f"--metrics-port {port}: cannot listen" in done.stderr
    done = gristmill("resume", str(run_dir), "--metrics-port", "0")
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "settings.json").read_text()) == {"limit": 2,
                                                                   "metrics_port": 0}


def test_without_prometheus_client_the_port_is_a_config_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "gristmill.runs.prometheus", raising=False)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(pipeline_config("http://127.0.0.1:9/v1", tmp_path)))
    code = main(["run", str(path), "--run-dir", str(tmp_path / "run"), "--no-progress",
                 "--metrics-port", str(free_port())])
    assert code == 2
    assert "pip install 'gristmill[metrics]'" in capsys.readouterr().err


async def test_the_dashboard_names_only_metrics_the_run_exposes(mock_server_factory, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert dashboard["panels"] and exprs
    mock = mock_server_factory(*FAULTS)
    _, last, _ = await run_and_scrape(config_for(mock.base_url, tmp_path, seeds=6),
                                      tmp_path / "run", free_port())
    _, exposed = parse(last)
    for expr in exprs:
        named = set(re.findall(r"\bgristmill_\w+", expr))
        assert named and named <= exposed, (expr, named - exposed)
