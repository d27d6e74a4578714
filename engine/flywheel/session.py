"""Judging a finished run's records again (alignment, the flywheel): the run's backends and
its response cache, and the judge stage driven by the ordinary pipeline over the records.

Judge answers are stored in the run's cache like any other: the same prompt asked again (a
re-run of `judge align` or `flywheel`, or a crash) is replayed, not paid for twice. Versioned
judge configs live in RUN/judge/judge-v<N>.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from gristmill.dataset.cache import AnswerCache
from gristmill.scheduling.client import ModelClient
from gristmill.config.pipeline import JudgeConfig, PipelineConfig
from gristmill.config.load import (format_validation_error, read_run_config, validate_config,
                                   with_cli_overrides)
from gristmill.config.yaml_file import read_yaml
from gristmill.errors import ConfigError
from gristmill.flows.items import Item
from gristmill.flows.pipeline import Pipeline
from gristmill.flows.stats import StageStats
from gristmill.dataset.store import Store
from gristmill.validation.stage import ValidationStats
from gristmill.flywheel.fewshot import Example
from gristmill.flywheel.judge_stage import JudgeStage

VERSION_FILE = re.compile(r"^judge-v(\d+)\.yaml$")


def run_config(run_dir: Path, backend_url: str | None = None) -> PipelineConfig:
    config = validate_config(read_run_config(run_dir), source=str(run_dir / "config.yaml"))
    return with_cli_overrides(config, backend_url=backend_url)


def judge_versions(run_dir: Path) -> dict[int, Path]:
    folder = run_dir / "judge"
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if match := VERSION_FILE.match(path.name):
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def load_judge(path: Path) -> JudgeConfig:
    try:
        return JudgeConfig.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path), root=JudgeConfig)) from None


def current_judge(run_dir: Path, config: PipelineConfig) -> JudgeConfig:
    """The newest aligned judge, else the run's own, else the default judge."""
    versions = judge_versions(run_dir)
    if versions:
        return load_judge(versions[max(versions)])
    return config.judge or JudgeConfig()


def write_judge(run_dir: Path, judge: JudgeConfig) -> Path:
    from gristmill.dataset.files import write_atomic

    (run_dir / "judge").mkdir(exist_ok=True)
    path = run_dir / "judge" / f"{judge.version}.yaml"
    text = yaml.safe_dump(judge.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    write_atomic(path, text.encode())
    return path


@dataclass
class Judged:
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # record id -> verdict
    failures: dict[str, str] = field(default_factory=dict)  # record id -> why none


class JudgeSession:
    """Clients and cache of one run, for judging its records outside a pipeline run."""

    def __init__(self, run_dir: Path, backend_url: str | None = None) -> None:
        from gristmill.runs.assembly import make_client

        self.run_dir = run_dir
        self.config = run_config(run_dir, backend_url)
        self.store = Store(run_dir / "run.sqlite", {})
        self.clients: dict[str, ModelClient] = {}
        for name, backend in self.config.backends.items():
            client = make_client(name, backend.in_mode("online"))  # a judge answers now
            client.cache = AnswerCache(self.store, name)
            self.clients[name] = client

    def client(self, judge: JudgeConfig) -> ModelClient:
        """The client of the judge's backend (answers cached in the run)."""
        if judge.backend not in self.clients:
            raise ConfigError(f"judge.backend: {judge.backend!r} is not a backend of this run; "
                              f"its backends: {sorted(self.clients)}")
        return self.clients[judge.backend]

    async def judge(self, judge: JudgeConfig, records: Iterable[dict[str, Any]],
                    pool: list[Example]) -> Judged:
        """Verdicts for the records (none is rejected for failing: the caller decides)."""
        client = self.client(judge)
        backend = self.config.backends[judge.backend]
        out = Judged()

        def reject(row: dict[str, Any]) -> None:
            out.failures[row["item_id"]] = row.get("reason", "")

        def emit(item: Item) -> None:
            out.verdicts[item.id] = item.values["judge"]

        stage = JudgeStage(judge, 0, client, judge.model or backend.model, backend.api,
                           StageStats("judge"), reject, ValidationStats(),
                           lambda item: item.values["record"], pool, on_fail="flag")
        items = (Item(r["id"], str(r.get("seed_id", "")), {"record": r}) for r in records)
        await Pipeline([stage], emit).run(items)
        return out

    def stats(self) -> dict[str, int]:
        caches = [c.cache for c in self.clients.values() if c.cache is not None]
        return {"requests": sum(c.requests for c in self.clients.values()),
                "cache_hits": sum(c.hits for c in caches),
                "cache_misses": sum(c.misses for c in caches)}

    async def aclose(self) -> None:
        import asyncio

        for client in self.clients.values():
            await asyncio.shield(client.aclose())
        await asyncio.shield(asyncio.to_thread(self.store.close))

    async def __aenter__(self) -> "JudgeSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
