"""Skills as data: `configs/skills/<skill>/` holds a skill's agents, taxonomy, refinement goals
and prompt templates. This module loads and checks them; the engine knows only stage kinds
(transform, generate, suggest, edit, answer), never a particular skill."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2 import meta
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gristmill.config.dialogue import DialogueConfig
from gristmill.config.load import format_validation_error
from gristmill.config.pipeline import OutputConfig
from gristmill.config.retrieval import RetrieveConfig
from gristmill.config.yaml_file import read_config_text, read_yaml
from gristmill.errors import ConfigError

COMMON = {"seed", "kind", "language", "skill", "agent", "elements", "element_ids", "page_title",
          "table"}
VARIABLES = {  # what each kind of template may use
    "transform": COMMON,
    "generate": COMMON | {"text", "types", "n"},
    "suggest": COMMON | {"text", "instruction", "type", "goals", "round"},
    "edit": COMMON | {"text", "instruction", "type", "suggestions", "round"},
    "answer": COMMON | {"text", "instruction", "type", "dialogue"},
    "record": COMMON | {"text", "instruction", "type", "answer", "dialogue"},
    "retrieved": COMMON | {"text", "instruction", "type", "dialogue", "passages", "distractors"},
    "retrieved_record": COMMON | {"text", "instruction", "type", "answer", "dialogue",
                                  "passages", "distractors"},
    "user_simulator": COMMON | {"text", "instruction", "type", "transcript", "turn", "turns",
                                "stop"},
    "tool_simulator": COMMON | {"text", "instruction", "type", "transcript", "tool", "name",
                                "arguments", "fail"},
}
_ENV = jinja2.Environment()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Agent(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    prompt: str | None = None
    system: str | None = None
    identity: bool = False  # the seed text as it is: no model call


class Transform(_Strict):
    system: str | None = None
    agents: list[Agent] = Field(min_length=1)
    output: OutputConfig | None = None  # type json: asked under its format, kept as JSON text


class Generate(_Strict):
    system: str | None = None
    prompt: str
    types_per_request: int = Field(2, ge=1, le=20)


class Prompted(_Strict):
    system: str | None = None
    prompt: str


class Refine(_Strict):
    goals: list[str] = Field(min_length=1)
    suggest: Prompted
    edit: Prompted


class Answer(Prompted):
    """How a skill's instructions are answered: text by default; `output` (type json, with
    a `format` that may be rendered per item), a `dialogue` (several turns, tools) for every
    item or for a `dialogue_share` of them (drawn from the item's id; the rest answered as
    without it), passages `retrieve`d from the seed corpus first; `validators`: final checks
    of this skill's answers on top of the flow's (the shape its records must have)."""

    output: OutputConfig | None = None
    dialogue: DialogueConfig | None = None
    dialogue_share: float | None = Field(None, ge=0, le=1)  # of items; None: all
    retrieve: RetrieveConfig | None = None
    validators: list[str | dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _share_of_a_dialogue(self) -> "Answer":
        if self.dialogue_share is not None and self.dialogue is None:
            raise ValueError("dialogue_share: a share of the answers are dialogues, so the "
                             "answer needs a `dialogue:` too (or drop dialogue_share)")
        return self


class Record(_Strict):
    system: str | None = None
    user: str
    fields: dict[str, str] = Field(default_factory=dict)  # record field -> path in the values


class TaxonomyType(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    definition: str = Field(min_length=1)
    example: str = Field(min_length=1)


class Skill(_Strict):
    name: str
    description: str = ""
    accepts: list[Literal["prose", "code", "html", "table"]] = Field(min_length=1)
    transform: Transform
    generate: Generate
    refine: Refine
    answer: Answer
    record: Record
    taxonomy: list[TaxonomyType] = Field(default_factory=list)

    def types(self) -> list[dict[str, str]]:
        return [t.model_dump() for t in self.taxonomy]


def default_skills_dir() -> Path:
    return Path(str(resources.files("gristmill.configs") / "skills"))


def _template(value: str | None, folder: Path, where: str) -> str | None:
    """A template field is a path relative to the skill folder ending in .j2, or inline text."""
    if value is None or not value.strip().endswith(".j2") or "\n" in value.strip():
        return value
    path = folder / value.strip()
    if not path.is_file():
        raise ConfigError(f"{where}: template file {path} does not exist")
    return read_config_text(path)


def _check(source: str | None, kind: str, where: str) -> None:
    if source is None:
        return
    try:
        used = meta.find_undeclared_variables(_ENV.parse(source))
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{where}: template syntax error on line {exc.lineno}: {exc.message}") from None
    unknown = sorted(used - VARIABLES[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown template variable(s) {unknown}; a {kind} template "
                          f"may use {sorted(VARIABLES[kind])}")


def _resolve_templates(data: dict[str, Any], folder: Path, name: str) -> None:
    """Replace template paths by their text and check each template's variables, in place."""
    def fix(node: dict[str, Any], key: str, kind: str, where: str) -> None:
        node[key] = _template(node.get(key), folder, where)
        _check(node[key], kind, where)

    transform = data.get("transform") or {}
    fix(transform, "system", "transform", f"{name}: transform.system")
    fmt = (transform.get("output") or {}).get("format")
    if isinstance(fmt, str):
        _check(fmt, "transform", f"{name}: transform.output.format")
    for i, agent in enumerate(transform.get("agents") or []):
        for key in ("prompt", "system"):
            fix(agent, key, "transform", f"{name}: transform.agents[{i}].{key}")
    answer = data.get("answer") or {}
    answer_kind = "retrieved" if answer.get("retrieve") else "answer"
    for section, kind in (("generate", "generate"), ("answer", answer_kind)):
        for key in ("system", "prompt"):
            fix(data.get(section) or {}, key, kind, f"{name}: {section}.{key}")
    _check_answer_modes(answer, answer_kind, name)
    for kind in ("suggest", "edit"):
        for key in ("system", "prompt"):
            fix((data.get("refine") or {}).get(kind) or {}, key, kind, f"{name}: refine.{kind}.{key}")
    record_kind = "retrieved_record" if answer.get("retrieve") else "record"
    for key in ("system", "user"):
        fix(data.get("record") or {}, key, record_kind, f"{name}: record.{key}")


def _check_answer_modes(answer: dict[str, Any], kind: str, name: str) -> None:
    """The templates of an answer's format, dialogue and retrieval query use only what their
    part of the answer can see."""
    fmt = (answer.get("output") or {}).get("format")
    if isinstance(fmt, str):
        _check(fmt, kind, f"{name}: answer.output.format")
    _check((answer.get("retrieve") or {}).get("query"), "answer", f"{name}: answer.retrieve.query")
    dialogue = answer.get("dialogue") or {}
    for key in ("system", "prompt"):
        _check((dialogue.get("user") or {}).get(key), "user_simulator",
               f"{name}: answer.dialogue.user.{key}")
    tools = dialogue.get("tools") or {}
    if isinstance(tools.get("offer"), str):
        _check(tools["offer"], kind, f"{name}: answer.dialogue.tools.offer")
    for key in ("system", "prompt"):
        _check((tools.get("simulator") or {}).get(key), "tool_simulator",
               f"{name}: answer.dialogue.tools.simulator.{key}")


def load_skill(name: str, skills_dir: Path | None = None) -> Skill:
    folder = (skills_dir or default_skills_dir()) / name
    path = folder / "skill.yaml"
    if not path.is_file():
        raise ConfigError(f"skill {name!r}: {path} not found (skills live in "
                          f"{folder.parent}/<skill>/skill.yaml)")
    data = read_yaml(path)
    taxonomy_path = folder / "taxonomy.yaml"
    if taxonomy_path.is_file():
        data["taxonomy"] = read_yaml(taxonomy_path, expect=list)  # a list of types
    _resolve_templates(data, folder, name)
    try:
        skill = Skill.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    for agent in skill.transform.agents:
        if not agent.identity and not agent.prompt:
            raise ConfigError(f"{path}: agent {agent.name!r} needs a prompt (or identity: true)")
    if not skill.taxonomy:
        raise ConfigError(f"{taxonomy_path}: a skill needs a taxonomy of instruction types")
    return skill
