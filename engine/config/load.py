"""Reading a pipeline config: YAML -> `--set` overrides -> pydantic, with errors that name the
field path, the bad value and what is allowed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from gristmill.config.backend import RENAMED
from gristmill.config.pipeline import PipelineConfig
from gristmill.config.yaml_file import read_yaml
from gristmill.errors import ConfigError


def find_config(name: str | Path) -> Path:
    """A path, or the name of a config shipped with gristmill ('demo', 'demo.yaml')."""
    path = Path(name)
    if path.exists():
        return path
    shipped = resources.files("gristmill.configs")
    for candidate in (str(name), f"{name}.yaml"):
        ref = shipped / candidate
        if ref.is_file():
            return Path(str(ref))
    raise ConfigError(f"config {str(name)!r} not found (neither a file nor a shipped config)")


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> PipelineConfig:
    path = find_config(path)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    for override in overrides:
        apply_override(data, override)
    return validate_config(data, base_dir=path.parent.resolve(), source=str(path))


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """A run directory's own config.yaml, as a dict in today's field names (a run written
    before a field was renamed resumes as it was)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    data = read_yaml(path)
    for backend in (data.get("backends") or {}).values():
        if isinstance(backend, dict):
            for old, new in RENAMED.items():
                if old in backend:
                    backend[new] = backend.pop(old)
    return data


def validate_config(data: dict[str, Any], *, base_dir: Path | None = None,
                    source: str = "config") -> PipelineConfig:
    from gristmill.flows.templates import check_templates

    try:
        config = PipelineConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, root=PipelineConfig)) from None
    check_templates(config)
    config._base_dir = base_dir
    return config


def format_validation_error(exc: ValidationError, source: str,
                            root: type[BaseModel] | None = None) -> str:
    """One line per error: the field's path, what is wrong, the value given; with `root` (the
    model validated: a pipeline config or a judge), a pointer to the section of the config
    reference (docs/config-reference.md) that documents the failing field."""
    lines = [f"{source}: {exc.error_count()} invalid field(s)"]
    for err in exc.errors(include_url=False):
        where = field_path(err["loc"])
        see = f"; see {reference_link(err['loc'], root)}" if root is not None else ""
        got = err.get("input")
        shown = repr(got) if not isinstance(got, dict) else "a mapping"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field; check the spelling"
        elif err["type"] == "missing":
            lines.append(f"  {where}: required field is missing{see}")
            continue
        lines.append(f"  {where}: {message} (got {shown}){see}" if where
                     else f"  {message}{see}")
    return "\n".join(lines)


def reference_link(loc: Iterable[Any], root: type[BaseModel] = PipelineConfig) -> str:
    """'docs/config-reference.md#backends' for an error at backends.default.rpm."""
    from gristmill.config.reference import PAGE, section_for

    return f"{PAGE}#{section_for(loc, root)}"


def field_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def apply_override(data: dict[str, Any], override: str) -> None:
    """`a.b.c=value`: value parsed as YAML; a list is indexed by number or by item `name`."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. stages.0.workers=8")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. a template with "{{"): the text itself
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            index = _list_index(node, part, where)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {override!r}: {where} is inside a value, not a mapping")


def _list_index(node: list[Any], part: str, where: str) -> int:
    if part.isdigit():
        if int(part) >= len(node):
            raise ConfigError(f"--set: {where}: index {part} out of range (the list has {len(node)})")
        return int(part)
    for index, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return index
    raise ConfigError(f"--set: {where}: no list item named {part!r}")


def with_cli_overrides(config: PipelineConfig, *, seeds: Path | None = None,
                       backend_url: str | None = None, vllm_model: str | None = None,
                       gpus: list[int] | None = None,
                       gpus_per_server: int | None = None) -> PipelineConfig:
    """`--seeds`, `--backend-url`, `--vllm-model/--gpus/--gpus-per-server`: a new seed source,
    every backend at one endpoint, or every backend on a `vllm serve` fleet gristmill starts."""
    data = config.model_dump(mode="python")
    if seeds is not None:
        data["seeds"] = {**data["seeds"], "path": Path(seeds).resolve(), "format": "auto"}
    if backend_url is not None:
        for backend in data["backends"].values():
            backend.update(kind="openai", fleet=None, base_urls=[backend_url])
    fleet = {k: v for k, v in (("gpus", gpus), ("gpus_per_server", gpus_per_server))
             if v is not None}
    if vllm_model is not None or fleet:
        for name, backend in data["backends"].items():
            on_fleet(backend, name, vllm_model, fleet)
    if seeds is None and backend_url is None and vllm_model is None and not fleet:
        return config
    return validate_config(data, source="command line")


SEQS_PER_SERVER = 256  # the in-flight ceiling per server; /metrics sets the actual caps


def on_fleet(backend: dict[str, Any], name: str, model: str | None,
             fleet: dict[str, Any]) -> None:
    """Turn a backend (dumped config) into a `kind: vllm` one serving `model`."""
    if model is None and backend["kind"] != "vllm":
        raise ConfigError(f"--gpus/--gpus-per-server: backend {name!r} starts no servers; "
                          "add --vllm-model NAME (a Hugging Face id or a local folder)")
    if model is not None:
        backend.update(kind="vllm", model=model, base_urls=[], scrape_metrics=True)
        backend["fleet"] = {**(backend.get("fleet") or {}), "model": None}
    backend["fleet"] = {**backend["fleet"], **fleet}
    placed = backend["fleet"]
    servers = (len(placed["gpus"]) // placed.get("gpus_per_server", 1) if placed.get("gpus")
               else placed.get("servers") or 1)
    backend["max_in_flight"] = SEQS_PER_SERVER * max(1, servers)
