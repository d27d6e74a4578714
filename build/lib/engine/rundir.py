"""The run directory: everything a run leaves behind, in one folder.

    config.yaml     the resolved config (secrets are never in it: keys come from the environment)
    output.jsonl    accepted records, one per line
    rejects.jsonl   failed or rejected items: id, stage, validator or error, reason, attempt, text
    summary.json    counts, failures by reason, tokens, throughput
    run.log         warnings and errors of the run
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from .config import PipelineConfig
from .sink import JsonlSink


def default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.output = JsonlSink(path / "output.jsonl")
        self.rejects = JsonlSink(path / "rejects.jsonl")
        self._log_handler = logging.FileHandler(path / "run.log", encoding="utf-8")
        self._log_handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("gristmill").addHandler(self._log_handler)

    def write_config(self, config: PipelineConfig) -> None:
        data = config.model_dump(mode="json")
        (self.path / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False),
                                               encoding="utf-8")

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.path / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))

    def close(self) -> None:
        self.output.close()
        self.rejects.close()
        logging.getLogger("gristmill").removeHandler(self._log_handler)
        self._log_handler.close()
