"""Cache keys and item ids do not depend on where the code lives: digests pinned from the code
before the package layout changed, and run directories that code made resume with every
answer a cache hit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from gristmill.dataset.cache import answer_key
from gristmill.flows.items import child_id, seed_id
from gristmill.protocol import Request

ROOT = Path(__file__).resolve().parent.parent
OLD_RUNS = ROOT / "tests" / "data" / "runs_before_layout"


def test_request_keys_and_item_ids_are_pinned():
    chat = Request("mock", messages=[{"role": "system", "content": "S"},
                                     {"role": "user", "content": "Q"}],
                   params={"temperature": 0.2, "max_tokens": 300},
                   response_format={"type": "json_object"}, stream=True, attempt=1, sample=2)
    text = Request("m", prompt="P", params={"max_tokens": 8})
    assert answer_key("default", chat).hex() == "b98df9c966511ef1129cb155256f117e"
    assert answer_key("judge", text).hex() == "f4519862fed7af894a17df9998417550"
    assert child_id("0123456789abcdef", "question:0.1") == "2ee37042bf8b83cb"
    assert seed_id("tides.txt#0", "The tide comes in.") == "226395c9745eb3c8"


@pytest.mark.parametrize("name", ["staged", "agentinstruct"])
def test_a_run_made_before_the_layout_change_resumes_from_its_cache(name, mock_server, tmp_path):
    run_dir = tmp_path / name
    shutil.copytree(OLD_RUNS / name, run_dir)
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["seeds"]["path"] = str(ROOT / "configs" / "seeds" / "demo")  # where: not an answer
    config["backends"]["default"]["base_urls"] = [mock_server.base_url]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    records = (run_dir / "output.jsonl").read_bytes()
    mock_server.reset()

    done = subprocess.run([sys.executable, "-m", "gristmill", "resume", str(run_dir),
                           "--no-progress"], capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["cache"]["misses"] == 0 and summary["cache"]["hits"] > 0
    assert mock_server.stats()["requests"] == 0  # nothing asked again
    assert (run_dir / "output.jsonl").read_bytes() == records  # nothing written twice
    assert summary["records_total"] == records.count(b"\n")
