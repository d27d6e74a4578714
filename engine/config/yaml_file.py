"""Reading a config-like file (pipeline YAML, skill, taxonomy, a run's config.yaml, a judge
file): every way it can be damaged becomes one ConfigError that names the file and the damage,
so the CLI can print it and exit 2 instead of showing a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gristmill.errors import ConfigError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml if present: several times faster
_SHAPES = {dict: "a mapping", list: "a list"}


def read_yaml(path: str | Path, expect: type = dict) -> Any:
    """The YAML document in `path`; `expect` is the top-level type it must be (dict or list)."""
    data = _parse(read_config_text(path), path)
    if data is None:
        raise ConfigError(f"{path}: empty (no YAML in it); expected {_SHAPES[expect]} at the top")
    if not isinstance(data, expect):
        raise ConfigError(f"{path}: expected {_SHAPES[expect]} at the top, found "
                          f"{_describe(data)}")
    return data


def read_config_text(path: str | Path) -> str:
    """The text of `path`, which must be UTF-8 and not binary."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    if "\0" in text:  # valid UTF-8 can still be binary; YAML's own message would be cryptic
        raise ConfigError(f"{path}: binary content, not text (a NUL byte at offset "
                          f"{raw.index(0)})")
    return text


def _parse(text: str, path: str | Path) -> Any:
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{path}: {_marked(exc)}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        raise ConfigError(f"{path}: bad YAML: character U+{exc.character:04X} at offset "
                          f"{exc.position}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: bad YAML: {exc}") from None


def _marked(exc: yaml.MarkedYAMLError) -> str:
    """'line 3, column 5: bad YAML: <problem> (<context> on line 2)', 1-based like editors."""
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    if not exc.problem:
        return f"{where}bad YAML: {exc.context or 'unreadable'}"
    context = ""
    if exc.context:
        line = f" on line {exc.context_mark.line + 1}" if exc.context_mark else ""
        context = f" ({exc.context}{line})"
    return f"{where}bad YAML: {exc.problem}{context}"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the value {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {shown!r}"
    return _SHAPES.get(type(value), f"a {type(value).__name__}")
