"""The Python API inside a running loop, the progress display, token counting."""

from __future__ import annotations

import json
import subprocess
import sys

from gristmill.config.load import validate_config
from gristmill.runs.progress import Rates, plain_line, render_table
from gristmill.runs.runner import Run, RunOptions
from gristmill.scheduling.tokens import count_messages, counter_for, estimate_tokens
from tests.conftest import pipeline_config


async def test_await_run_and_run_sync_inside_a_running_loop(mock_server, tmp_path):
    import gristmill

    config = validate_config(pipeline_config(mock_server.base_url, tmp_path, seeds=3))
    summary = await gristmill.run(config, gristmill.RunOptions(run_dir=tmp_path / "a", progress=False))
    assert summary["records"] == 6
    # a notebook cell calling the sync wrapper while its own loop runs
    summary = gristmill.run_sync(config, gristmill.RunOptions(run_dir=tmp_path / "b", progress=False))
    assert summary["records"] == 6


def test_a_run_without_a_display_starts_none(mock_server, tmp_path):
    # rich costs ~20 ms to import, inside the run's time: only a display pays for it
    config = json.dumps(pipeline_config(mock_server.base_url, tmp_path, seeds=2))
    script = f"""
import json, pathlib, sys, gristmill
from gristmill.config.load import validate_config
config = validate_config(json.loads({config!r}))
summary = gristmill.run_sync(config, gristmill.RunOptions(run_dir=pathlib.Path({str(tmp_path / "r")!r}),
                                                    progress=False))
print(json.dumps([summary["records"], "rich" in sys.modules]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [4, False]


def test_run_sync_without_a_loop(mock_server, tmp_path):
    import gristmill

    config = gristmill.load_config("demo")
    from gristmill.config.load import with_cli_overrides

    config = with_cli_overrides(config, backend_url=mock_server.base_url)
    summary = gristmill.run_sync(config, gristmill.RunOptions(run_dir=tmp_path / "d", progress=False,
                                                        limit=2))
    assert summary["seeds"] == 2 and summary["records"] > 0


async def test_progress_shows_every_stage_with_its_counters(mock_server, tmp_path):
    from rich.console import Console

    config = validate_config(pipeline_config(mock_server.base_url, tmp_path, seeds=4))
    run = Run(config, RunOptions(run_dir=tmp_path / "p", progress=False, limit=4))
    rates = Rates(run)
    await run.execute()
    rates.update()
    console = Console(record=True, width=120)
    console.print(render_table(run, rates))
    text = console.export_text()
    assert "question" in text and "answer1" in text and "in flight" in text
    assert "records 8" in text and "seeds 4" in text
    line = plain_line(run, rates)
    assert "question 4 done" in line and "answer1 8 done" in line


def test_estimate_and_message_counts():
    assert estimate_tokens("") == 0 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    assert count_messages([{"role": "user", "content": "abcdefgh"}]) == 2 + 4


def test_local_tokenizer_gives_exact_counts(tmp_path):
    import tokenizers
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    text = ["the mill grinds grain into flour", "the river turns the wheel"] * 50
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    count = counter_for(str(path))
    sample = "the wheel grinds flour"
    assert count(sample) == len(tok.encode(sample).ids) != estimate_tokens(sample)


async def test_progress_shows_validator_counts(mock_server_factory, tmp_path):
    server = mock_server_factory("--bad-rate", "1", "--bad-kinds", "refusal", "--bad-tokens", "300")
    data = pipeline_config(server.base_url, tmp_path, seeds=2, stages=1)
    data["stages"][0].update({"output": {"type": "text"}, "stream": True,
                              "sampling": {"max_tokens": 400},
                              "validators": {"max_regenerations": 0}})
    run = Run(validate_config(data), RunOptions(run_dir=tmp_path / "v", progress=False))
    rates = Rates(run)
    await run.execute()
    line = plain_line(run, rates)
    assert "validators rejected: refusal 2" in line and "stopped early 2" in line
