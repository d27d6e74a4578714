"""Spend end to end, against the real mock server process (reporting half of each prompt as
cached) through the `gristmill` command: cost from the reported usage, cumulative across
sessions; the budget stops a run with exit 5 and a resume with more completes it; the dry
run's cost estimate."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gristmill.backends.mock.process import MockServerProcess
from gristmill.config.load import validate_config
from gristmill.dataset.cache import decode
from gristmill.errors import BudgetReached
from gristmill.runs.runner import Run, RunOptions
from tests.conftest import pipeline_config

SEEDS = 12  # a question request a seed, two answers each: 36 requests, 24 records
PRICE = {"input": 1.0, "cached_input": 0.25, "output": 2.0}  # USD per million tokens
MOCK = ("--cached-prompt-fraction", "0.5")
ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, base_url: str, **top: Any) -> Path:
    data = pipeline_config(base_url, tmp_path, seeds=SEEDS, price=PRICE, max_in_flight=4)
    data.update(top)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def gristmill(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    return subprocess.run([sys.executable, "-m", "gristmill", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=120, env=env)


def summary(run_dir: Path) -> dict[str, Any]:
    return orjson.loads((run_dir / "summary.json").read_bytes())


def records(run_dir: Path) -> dict[str, Any]:
    rows = [orjson.loads(line) for line in (run_dir / "output.jsonl").read_bytes().splitlines()]
    return {row["id"]: row["messages"] for row in rows}


def answers_usage(run_dir: Path) -> list[Any]:
    """The usage of every answer the run's cache holds (what the mock reported)."""
    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        return [decode(value).usage for (value,) in conn.execute("SELECT value FROM answers")]


def formula(usages: list[Any]) -> float:
    return sum((u.prompt_tokens - u.cached_prompt_tokens) * PRICE["input"]
               + u.cached_prompt_tokens * PRICE["cached_input"]
               + u.completion_tokens * PRICE["output"] for u in usages) / 1e6


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], float]:
    """The records and cost of a run without a budget."""
    tmp = tmp_path_factory.mktemp("clean")
    with MockServerProcess(*MOCK) as server:
        done = gristmill("run", str(write_config(tmp, server.base_url)), "--run-dir",
                         str(tmp / "run"))
        stats = server.stats()
    assert done.returncode == 0, done.stderr
    ended = summary(tmp / "run")
    usages = answers_usage(tmp / "run")
    assert len(usages) == stats["requests"] == 3 * SEEDS
    # what the mock reported, cached tokens included, is what the cache kept and priced
    assert all(u.cached_prompt_tokens == u.prompt_tokens // 2 > 0 for u in usages)
    assert sum(u.prompt_tokens for u in usages) == stats["prompt_tokens"]
    assert sum(u.completion_tokens for u in usages) == stats["completion_tokens"]
    cost = ended["cost_usd"]
    assert cost["total"] == pytest.approx(formula(usages), abs=2e-6)
    assert cost["by_backend"] == {"default": cost["total"]}
    assert cost["this_session"] == cost["total"] and "budget" not in cost
    backend = ended["backends"]["default"]
    assert backend["cost_usd"] == cost["total"]
    assert backend["cached_prompt_tokens"] == sum(u.cached_prompt_tokens for u in usages)
    return records(tmp / "run"), cost["total"]


def test_cost_is_the_price_of_the_reported_usage_and_adds_up_across_sessions(tmp_path, clean):
    _, full = clean
    run_dir = tmp_path / "run"
    with MockServerProcess(*MOCK) as server:
        config = write_config(tmp_path, server.base_url)
        first = gristmill("run", str(config), "--run-dir", str(run_dir), "--limit", "4")
        part = summary(run_dir)["cost_usd"]["total"]
        resumed = gristmill("resume", str(run_dir), "--limit", "0")
    assert first.returncode == 0 and resumed.returncode == 0, resumed.stderr
    assert 0 < part < full
    cost = summary(run_dir)["cost_usd"]
    # cached answers replay for free: the whole run cost what one session would have
    assert cost["total"] == pytest.approx(full, abs=5e-6)
    assert cost["this_session"] == pytest.approx(full - part, abs=5e-6)
    status = subprocess.run([sys.executable, "-m", "gristmill", "status", str(run_dir)],
                            capture_output=True, text=True, timeout=60)
    assert f"spent ${cost['total']:,.4f}" in status.stdout


def test_a_budget_stops_the_run_and_a_resume_with_more_completes_it(tmp_path, clean):
    clean_records, full = clean
    run_dir = tmp_path / "run"
    budget = round(full * 0.4, 6)
    with MockServerProcess(*MOCK) as server:
        config = write_config(tmp_path, server.base_url)
        stopped = gristmill("run", str(config), "--run-dir", str(run_dir), "--budget-usd",
                            str(budget))
        ended, written = summary(run_dir), records(run_dir)
        kept = orjson.loads((run_dir / "settings.json").read_bytes())
        again = gristmill("resume", str(run_dir))  # keeps the budget: stops at once
        after_again = summary(run_dir)["cost_usd"]["total"]
        raised = gristmill("resume", str(run_dir), "--budget-usd", str(full * 3))
    assert stopped.returncode == 5, stopped.stderr
    assert "budget" in stopped.stderr and "Traceback" not in stopped.stderr
    assert (ended["status"], ended["stop_reason"], ended["exit_code"]) == ("stopped", "budget", 5)
    assert 0 < ended["cost_usd"]["total"] <= budget
    assert ended["cost_usd"]["budget"]["reached"] and ended["rejects"] == 0  # none tried
    assert ended["cost_usd"]["budget"]["reserved_usd"] == 0  # nothing left in flight
    state = orjson.loads((run_dir / "state.json").read_bytes())
    assert all(stage["in_flight"] == 0 for stage in state["stages"])
    assert len(written) < len(clean_records)
    assert kept["budget_usd"] == budget
    assert again.returncode == 5, again.stderr
    assert after_again <= budget
    assert raised.returncode == 0, raised.stderr
    assert records(run_dir) == clean_records
    assert summary(run_dir)["cost_usd"]["total"] == pytest.approx(full, abs=5e-6)


async def test_a_budget_stop_leaves_nothing_in_flight(tmp_path):
    with MockServerProcess(*MOCK, "--latency-ms", "20") as server:
        data = yaml.safe_load(write_config(tmp_path, server.base_url).read_text())
        run = Run(validate_config(data), RunOptions(run_dir=tmp_path / "run", progress=False,
                                                    budget_usd=0.001))
        with pytest.raises(BudgetReached):
            await run.execute()
        asked = server.stats()["requests"]
    client = run.clients["default"]
    assert client.pool.in_flight == 0 and client.pool.waiting == 0
    assert run.budget.outstanding == 0 and run.budget.reserved == 0
    assert client.requests == asked > 0  # what was sent was answered: none cut off
    assert run.budget.spent <= 0.001
    assert run.outcome.stop_reason == "budget"
    from gristmill.runs.progress import notes

    assert any("of budget $0.00" in line and "budget reached" in line for line in notes(run))
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


@pytest.mark.parametrize("where", ["config", "flag"])
def test_a_budget_with_an_unpriced_model_is_a_config_error(tmp_path, where):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=2)
    data["judge"] = {"backend": "judge"}
    data["backends"]["judge"] = {"base_url": "http://127.0.0.1:9/v1", "model": "my-judge"}
    data["backends"]["default"]["model"] = "gpt-4o-mini"
    if where == "config":
        data["budget_usd"] = 1
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    flag = ["--budget-usd", "1"] if where == "flag" else []
    done = gristmill("run", str(path), "--run-dir", str(tmp_path / "run"), *flag)
    assert done.returncode == 2, done.stderr
    assert "backend 'judge' model 'my-judge'" in done.stderr and "price" in done.stderr
    assert "gpt-4o-mini" not in done.stderr and not (tmp_path / "run" / "run.sqlite").exists()


def test_the_dry_run_estimates_cost_online_and_in_batch_with_the_judge(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=5)
    data["backends"]["default"]["model"] = "gpt-4o-mini"
    data["judge"] = {"sampling": {"max_tokens": 300}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    done = gristmill("run", str(path), "--dry-run")
    assert done.returncode == 0, done.stderr
    # 5 question requests, 2 answers each, and the judge: one request per record (10)
    assert "about 25 requests (10 of them the judge's)" in done.stdout
    line = next(line for line in done.stdout.splitlines() if line.startswith("cost:"))
    online, batch = (float(x.replace(",", "")) for x in
                     __import__("re").findall(r"\$([\d,.]+)", line))
    assert online > 0 and batch == pytest.approx(online / 2, abs=1e-4)  # batch: half
    # completion tokens at max_tokens: 5 x 200 + 10 x 200 + 10 x 300 at $0.60 per million
    assert online > 6000 * 0.60 / 1e6
    without = dict(data, judge=None)
    path.write_text(yaml.safe_dump(without))
    plain = gristmill("run", str(path), "--dry-run")
    assert "about 15 requests," in plain.stdout and "judge" not in plain.stdout


def test_a_run_written_before_spend_resumes_and_replays_for_free(tmp_path, mock_server):
    import shutil

    run_dir = tmp_path / "staged"
    shutil.copytree(ROOT / "tests" / "data" / "runs_before_layout" / "staged", run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["seeds"]["path"] = str(ROOT / "configs" / "seeds" / "demo")
    config["backends"]["default"]["base_urls"] = [mock_server.base_url]
    config["backends"]["default"]["price"] = PRICE  # a price changes no answer
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    mock_server.reset()
    done = gristmill("resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    ended = summary(run_dir)
    assert ended["cache"]["misses"] == 0 and ended["cost_usd"]["total"] == 0
    assert mock_server.stats()["requests"] == 0
    assert math.isclose(ended["cost_usd"]["this_session"], 0)
