"""The run directory: everything a run leaves behind, in one folder.

    config.yaml     the resolved config (secrets are never in it: keys come from the environment)
    manifest.json   package versions, git revision, backends and models, skills digest, the
                    rules by which seeds choose agents and types and fall into shards,
                    the retrieval index's digest of its corpus and settings
    retrieval/      the BM25 index over the seeds, with `retrieval:` (docs/retrieval.md)
    settings.json   command-line settings that change no answer (--limit, --metrics-port),
                    kept by a resume
    run.sqlite      the response cache (answers already paid for) and the seed texts
    output.jsonl    accepted records, one per line (append-only)
    rejects.jsonl   failed or rejected work: id, item_id, stage, validator or error, reason, ...
    state.json      progress, rewritten every few seconds: `gristmill status RUN` reads it
    summary.json    counts, failures by reason, tokens, throughput (at the end)
    history/v<N>/   every config the run ran with and its skill files (runs/history.py)
    run.log         warnings and errors of the run
"""

from __future__ import annotations

import hashlib
import logging
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import yaml

from gristmill.config.pipeline import PipelineConfig
from gristmill.config.resume import answer_changes
from gristmill.config.load import read_run_config
from gristmill.dataset.files import read_json, write_atomic
from gristmill.errors import ConfigError
from gristmill.flows.sampling import CHOICE_RULES
from gristmill.runs.history import record_version
from gristmill.seeds.shards import SHARD_RULE

_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: a fifth of the time
PACKAGES = ("gristmill", "aiohttp", "pydantic", "orjson", "uvloop", "jinja2", "vllm")


def default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def skills_digest(config: PipelineConfig) -> str | None:
    """A hash of the skill folders' files: an edited prompt changes answers."""
    if config.agentinstruct is None:
        return None
    from gristmill.flows.skills import default_skills_dir

    root = config.agentinstruct.skills_dir or default_skills_dir()
    digest = hashlib.blake2b(digest_size=16)
    for name in config.agentinstruct.skills:
        for path in sorted((root / name).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.resuming = (path / "config.yaml").exists()
        self.changes: list[str] = []  # answer-changing fields a forced resume changed
        path.mkdir(parents=True, exist_ok=True)
        self._log_handler = logging.FileHandler(path / "run.log", encoding="utf-8")
        self._log_handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("gristmill").addHandler(self._log_handler)

    def check_resume(self, config: PipelineConfig, force: bool) -> None:
        """Refuse to continue a run whose answers the new config would change."""
        old = read_run_config(self.path)
        changes = answer_changes(old, config.model_dump(mode="json"))
        manifest = read_json(self.path / "manifest.json")  # None: the first session died
        if manifest is not None and manifest.get("skills_digest") != skills_digest(config):
            changes.append("agentinstruct skill files (prompts, agents or taxonomy)")
        self.changes = changes
        if changes and not force:
            raise ConfigError(f"{self.path} was started with a different config; resuming would "
                              f"change answers. Changed: {', '.join(changes)}. Use the original "
                              "config, a new --run-dir, or --force to continue anyway.")

    def read_settings(self) -> dict[str, Any] | None:
        """settings.json: what an earlier session was told on its command line that changes
        no answer (`--limit`, `--metrics-port`), for a resume to keep."""
        return read_json(self.path / "settings.json")

    def write_settings(self, settings: dict[str, Any]) -> None:
        write_atomic(self.path / "settings.json", orjson.dumps(settings))

    def write_config(self, config: PipelineConfig) -> None:
        """config.yaml: written before any request, so a later session knows it resumes."""
        text = yaml.dump(config.model_dump(mode="json"), Dumper=_YAML_DUMPER, sort_keys=False)
        (self.path / "config.yaml").write_text(text, encoding="utf-8")
        record_version(self.path, text, config, self.changes)

    def choice_rule(self) -> str:
        """How seeds pick their agents and instruction types (flows/sampling.py): what the
        manifest recorded, `seed_position` for a run from before the rule was recorded, the
        current rule for a new run (or one whose first session died before its manifest)."""
        manifest = read_json(self.path / "manifest.json") if self.resuming else None
        if manifest is None:
            return CHOICE_RULES[0]
        return manifest.get("choices", "seed_position")

    def write_manifest(self, config: PipelineConfig, choices: str,
                       retrieval: dict[str, Any] | None = None) -> None:
        """manifest.json: slow to gather (package metadata, a git subprocess), so the run
        writes it on a thread while its first requests go out. `retrieval`: what the
        retrieval index says of itself (its digest of the corpus and settings)."""
        manifest = {"choices": choices, "shard_rule": SHARD_RULE,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": _versions(),
            "git_revision": _git_revision(),
            "backends": {n: {"model": b.model, "api": b.api} for n, b in config.backends.items()},
            "skills_digest": skills_digest(config), "retrieval": retrieval}
        write_atomic(self.path / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))

    @property
    def has_manifest(self) -> bool:
        return (self.path / "manifest.json").exists()

    def write_state(self, state: dict[str, Any]) -> None:
        write_atomic(self.path / "state.json", orjson.dumps(state, option=orjson.OPT_INDENT_2))

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomic(self.path / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))

    def close(self) -> None:
        logging.getLogger("gristmill").removeHandler(self._log_handler)
        self._log_handler.close()
