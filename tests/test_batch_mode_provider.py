"""mode: batch and what the provider does: the batch price, a spending cap on the answers in
flight, its limits (requests in a file, enqueued tokens), an expired batch that did part of
its work, batches cancelled from the command line; each time a run that ends with the
records of online mode or stops with a clear reason."""

from __future__ import annotations

import re
import subprocess
from collections import Counter

import orjson
import pytest
import yaml

from gristmill.backends.mock.process import MockServerProcess
from tests.batch_support import (FAST, GRISTMILL, SEEDS, batch_config, gristmill,
                                 gristmill_text, records, submitted_keys)
from tests.conftest import pipeline_config



def test_a_budget_caps_batch_mode_and_a_resume_with_more_completes_it(tmp_path,
                                                                      online_records):
    """Requests waiting in a batch keep their reservation until answered: the budget is never
    passed, the run ends once the batches in flight have (exit 5), nothing is left reserved,
    and a resume with a higher budget gives the records of an online run."""
    price = {"input": 1.0, "output": 2.0}
    with MockServerProcess() as server:
        config = batch_config(tmp_path, server.base_url, price=price, max_in_flight=2)
        full = tmp_path / "full"
        assert gristmill("run", str(config), "--run-dir", str(full)).returncode == 0
        cost = orjson.loads((full / "summary.json").read_bytes())["cost_usd"]["total"]
        budget = round(cost * 0.4, 6)
        run_dir = tmp_path / "run"
        stopped = gristmill("run", str(config), "--run-dir", str(run_dir), "--budget-usd",
                            str(budget))
        ended = orjson.loads((run_dir / "summary.json").read_bytes())
        partial = len(records(run_dir))
        resumed = gristmill("resume", str(run_dir), "--budget-usd", str(cost * 3))
    assert stopped.returncode == 5, stopped.stderr
    assert "budget" in stopped.stderr and "request(s) not sent" in stopped.stderr
    spent = ended["cost_usd"]
    assert 0 < spent["total"] <= budget and spent["budget"]["reserved_usd"] == 0
    assert ended["rejects"] == 0 and partial < len(online_records)
    assert resumed.returncode == 0, resumed.stderr
    assert records(run_dir) == online_records


def test_files_over_the_providers_limits_stop_the_run_and_smaller_files_complete_it(
        tmp_path, online_records):
    """The provider takes at most 5 requests a file: every file of up to 200 would fail
    validation, so the first stops the run (exit 3) instead of rejecting every item; the
    same run with smaller files completes with the records of an online run."""
    run_dir = tmp_path / "run"
    with MockServerProcess("--batch-max-requests", "5") as server:
        stopped = gristmill("run", str(batch_config(tmp_path, server.base_url)), "--run-dir",
                            str(run_dir))
        state = orjson.loads((run_dir / "state.json").read_bytes())
        smaller = batch_config(tmp_path, server.base_url,
                               batch_files={**FAST, "max_requests": 5})
        resumed = gristmill("run", str(smaller), "--run-dir", str(run_dir))
    assert stopped.returncode == 3, stopped.stderr
    assert "too_many_requests" in stopped.stderr and "max_requests 200" in stopped.stderr
    assert state["stop_reason"] == "fatal_upstream"
    rejects = run_dir / "rejects.jsonl"
    assert not rejects.exists() or not rejects.read_bytes()  # no item was blamed
    assert resumed.returncode == 0, resumed.stderr
    assert records(run_dir) == online_records



def test_status_lists_batches_and_cancel_cancels_them_and_a_resume_completes(
        tmp_path, online_records):
    import signal
    import time

    run_dir = tmp_path / "run"
    with MockServerProcess("--batch-ms-per-request", "100") as server:
        config = batch_config(tmp_path, server.base_url)
        data = yaml.safe_load(config.read_text())
        data["grace_s"] = 1
        config.write_text(yaml.safe_dump(data))
        running = subprocess.Popen([*GRISTMILL, "run", str(config), "--run-dir", str(run_dir),
                                    "--no-progress"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while "batch_" not in subprocess.run(
                    [*GRISTMILL, "batches", "list", str(run_dir)], capture_output=True,
                    text=True, timeout=60).stdout:
                assert time.monotonic() < deadline, "no batch was created"
                time.sleep(0.1)
            cancelled = gristmill_text("batches", "cancel", str(run_dir))
            assert "cancel" in cancelled and "default:" in cancelled
            status = gristmill_text("status", str(run_dir))  # open ones listed, if any left
            assert re.search(r"batches of default: \d+ files, \d+ done", status)
        finally:
            running.send_signal(signal.SIGTERM)
            running.communicate(timeout=60)
        assert server.stats()["batches"]["cancelled"] >= 1
        resumed = gristmill("resume", str(run_dir))  # the provider still has the batches
    assert resumed.returncode == 0, resumed.stderr
    assert records(run_dir) == online_records



def test_batch_mode_pays_the_batch_price(tmp_path):
    """The same answers, at half the price (the default batch discount)."""
    price = {"input": 1.0, "cached_input": 0.25, "output": 2.0}
    costs = {}
    with MockServerProcess() as server:
        for mode in ("online", "batch"):
            data = pipeline_config(server.base_url, tmp_path, seeds=SEEDS, mode=mode,
                                   batch_files=FAST, price=price)
            path = tmp_path / f"{mode}.yaml"
            path.write_text(yaml.safe_dump(data))
            done = gristmill("run", str(path), "--run-dir", str(tmp_path / mode))
            assert done.returncode == 0, done.stderr
            summary = orjson.loads((tmp_path / mode / "summary.json").read_bytes())
            costs[mode] = summary["cost_usd"]["total"]
    assert costs["online"] > 0 and costs["batch"] == pytest.approx(costs["online"] / 2)



def test_an_expired_batch_keeps_what_it_did_and_the_rest_is_asked_once_more(tmp_path):
    """A file of 20 expires with 12 done (60 %): those 12 are kept, never asked again; the
    other 8 go into one more file, which completes."""
    with MockServerProcess("--batch-expire-after", "12") as server:
        # the 8 are asked again at once (a short retry backoff), so they make one file
        data = pipeline_config(server.base_url, tmp_path, seeds=20, stages=1, mode="batch",
                               batch_files={**FAST, "idle_seal_s": 1.0},
                               retry={"base_s": 0.01, "max_s": 0.01})
        path = tmp_path / "one-stage.yaml"
        path.write_text(yaml.safe_dump(data))
        done = gristmill("run", str(path), "--run-dir", str(tmp_path / "run"))
        stats = server.stats()["batches"]
        keys = submitted_keys(server)
    assert done.returncode == 0, done.stderr
    assert len(records(tmp_path / "run")) == 40  # two questions a seed
    assert (stats["created"], stats["expired"], stats["completed"]) == (2, 1, 1)
    assert stats["requests_completed"] == 20 and stats["requests_failed"] == 8
    assert sorted(Counter(keys.values()).items()) == [(1, 12), (2, 8)]  # only the 8, once
    listed = gristmill_text("batches", "list", str(tmp_path / "run"))
    assert "20 requests" in listed and " 8 requests" in listed



def test_a_full_enqueued_token_queue_makes_files_wait_not_fail(tmp_path, online_records):
    """The provider holds one file's tokens at a time (its enqueued-token limit): the other
    files are refused with token_limit_exceeded, wait and go again; no item is rejected."""
    with MockServerProcess("--batch-enqueued-tokens", "3000",
                           "--batch-ms-per-request", "20") as server:
        config = batch_config(tmp_path, server.base_url, max_in_flight=40,  # files at once
                              batch_files={**FAST, "max_requests": 10, "poll_max_s": 0.2})
        done = gristmill("run", str(config), "--run-dir", str(tmp_path / "run"))
        stats = server.stats()["batches"]
    assert done.returncode == 0, done.stderr
    assert records(tmp_path / "run") == online_records
    assert stats["failed"] > 0  # refused for the limit at least once
    assert stats["requests_completed"] == 60  # and nothing answered twice
    assert orjson.loads((tmp_path / "run" / "summary.json").read_bytes())["rejects"] == 0
