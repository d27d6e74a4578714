"""Pipeline configuration: pydantic models with per-field docs, bounds and errors that say
what to change. Loading, path resolution and `--set` overrides live in `load.py`;
`reference.py` writes docs/config-reference.md from the field descriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (PrivateAttr, ValidationInfo, field_validator,
                      model_validator)

from gristmill.config.cluster import ClusterConfig
from gristmill.config.dialogue import DialogueConfig
from gristmill.config.assertions import join_assertion_criteria
from gristmill.config.judge import (CriterionConfig, FewShotConfig, JudgeConfig,  # noqa: F401
                                    JudgeExample)  # (re-exported)
from gristmill.config.backend import BackendConfig, MicroBatchConfig, Retry, Timeouts  # noqa: F401
from gristmill.config.base import (NAME_PATTERN, RESERVED_NAMES, Field, RelPath,  # noqa: F401
                                   Strict)  # (re-exported)
from gristmill.config.retrieval import RetrievalConfig, RetrieveConfig
from gristmill.config.sampling import Sampling  # noqa: F401 (re-exported)
from gristmill.config.seeds import SeedsConfig  # noqa: E402
from gristmill.errors import ConfigError


class OutputConfig(Strict):
    type: Literal["text", "list", "json"] = Field("text", answers=True, description="'text': the answer "
        "is one item. 'list': a JSON list of strings, each becomes an item. 'json': a JSON "
        "value (checked against `format`), one item holding it.")
    min_items: int = Field(1, answers=True, ge=1, description="'list': fewest strings the answer must "
                           "hold (minItems of the schema).")
    max_items: int = Field(5, answers=True, ge=1, description="'list': most strings the answer may hold "
                           "(maxItems of the schema); at least min_items.")
    max_chars: int | None = Field(None, answers=True, ge=1, description="maxLength of each string in the schema.")
    json_schema: bool = Field(True, answers=True, description="Send a JSON-schema response_format; turn off for "
                              "endpoints without it (a tolerant parser reads the answer).")
    format: dict[str, Any] | str | None = Field(None, answers=True, description="'json': the "
        "answer's JSON schema, sent as the response_format and checked by the `schema` "
        "validator: a mapping, or a Jinja2 template rendering one per item (e.g. an enum of "
        "this page's element ids: '{\"enum\": {{ element_ids | tojson }}}').")

    @model_validator(mode="after")
    def _bounds(self) -> "OutputConfig":
        if self.max_items < self.min_items:
            raise ValueError(f"max_items ({self.max_items}) must be >= min_items ({self.min_items})")
        if self.type == "json" and self.format is None:
            raise ValueError("format: a type: json output needs its JSON schema, e.g. format: "
                             "{type: object, properties: {answer: {type: string}}}")
        if self.format is not None and self.type != "json":
            raise ValueError("format: only a type: json output has a schema; add type: json")
        return self


class ValidatorsConfig(Strict):
    """Which validators check a stage's answers: the built-in defaults merged with the lists
    below (an entry replaces the default of its name). Each validator's parameters: the
    config reference's "Validator parameters" (docs/config-reference.md)."""

    defaults: bool = Field(True, answers=True, description="Include the built-in defaults (stream: refusal, "
                           "json_prefix, repetition, language, max_length; final: truncated, "
                           "schema, placeholders, restates_question).")
    stream: list[str | dict[str, Any]] = Field(answers=True, default_factory=list, description="Checks on "
                                               "the text as it streams; {name: x, enabled: "
                                               "false} turns a default off.")
    final: list[str | dict[str, Any]] = Field(answers=True, default_factory=list, description="Checks on "
                                              "the whole answer.")
    abort_early: bool = Field(True, answers=True, description="Stop a streamed answer the moment a streaming "
                              "check rejects it; off: the same checks judge it once complete.")
    check_every_chars: int = Field(512, answers=True, ge=1, description="Streaming checks run when this much "
                                   "new text has arrived (~128 tokens): a bad answer is stopped "
                                   "at most that much later, for a fraction of the CPU.")
    max_regenerations: int = Field(2, answers=True, ge=0, le=20, description="New requests (with their "
                                   "attempt number) after a rejected answer, before the item "
                                   "becomes a reject.")
    assertions: RelPath | None = Field(None, answers=True, description="An assertion file (docs/"
        "assertions.md): its checks run as final validators, its LLM criteria join the judge's.")


class StageConfig(Strict):
    name: str = Field(answers=True, pattern=NAME_PATTERN, description="Identifier; later templates use it "
                      "as a variable holding this stage's output.")
    backend: str = Field("default", answers=True, description="Key in `backends`.")
    model: str | None = Field(None, answers=True, description="Overrides the backend's model for this stage.")
    mode: Literal["online", "batch"] | None = Field(None, answers=False, description="Send these "
        "requests online or through the provider's Batch API; default: the backend's `mode`.")
    system: str | None = Field(None, answers=True, description="Jinja2 template of the system message.")
    prompt: str = Field(answers=True, min_length=1, description="Jinja2 template of the user message "
                        "(or the prompt, for completions).")
    output: OutputConfig = Field(answers=True, default_factory=OutputConfig, description="The shape of "
                                 "the answer: one text, or a JSON list of items.")
    fan_out: int = Field(1, answers=True, ge=1, le=1000, description="Requests per input item (variable "
                         "`variant` tells them apart).")
    sampling: Sampling = Field(answers=True, default_factory=Sampling, description="Sampling parameters "
                               "of this stage's requests.")
    stream: bool = Field(False, answers=False, description="Stream the answer (costs CPU; use it where a "
                         "streaming validator needs it).")
    workers: int | None = Field(None, answers=False, ge=1, le=100_000, description="Concurrent items in this "
                                "stage; default: the backend's max_in_flight.")
    queue_size: int | None = Field(None, answers=False, ge=1, description="Items waiting for this stage; "
                                   "default: 2 x workers.")
    validators: ValidatorsConfig = Field(answers=True, default_factory=ValidatorsConfig, description="The "
                                         "checks on this stage's answers.")
    retrieve: RetrieveConfig | None = Field(None, answers=True, description="Passages from "
                                            "the seed corpus for this stage's templates "
                                            "(`passages`, `distractors`); needs `retrieval`.")
    dialogue: DialogueConfig | None = Field(None, answers=True, description="Make the answer a "
        "conversation of several turns (a simulated user, optional tools with a simulated "
        "API); the stage's output is {messages, tools}, and a last stage's record keeps the "
        "whole conversation (docs/dialogues.md).")

    @model_validator(mode="after")
    def _dialogue_fits(self) -> "StageConfig":
        if self.dialogue is not None and self.output.type != "text":
            raise ValueError("dialogue: the answer of a dialogue is its conversation; remove "
                             "output (or the dialogue)")
        return self


class KindSettings(Strict):
    """How one AgentInstruct stage kind reaches its model."""

    backend: str = Field("default", answers=True, description="Key in `backends`.")
    model: str | None = Field(None, answers=True, description="Overrides the backend's model.")
    mode: Literal["online", "batch"] | None = Field(None, answers=False, description="Send these "
        "requests online or through the provider's Batch API; default: the backend's `mode`.")
    sampling: Sampling = Field(answers=True, default_factory=Sampling, description="Sampling parameters of "
                               "this kind's requests; each kind has its own defaults.")
    stream: bool = Field(False, answers=False, description="Stream the answers (lets streaming validators "
                         "stop a bad one early; costs CPU).")
    workers: int | None = Field(None, answers=False, ge=1, le=100_000, description="Concurrent items of this "
                                "kind; default: the backend's max_in_flight.")
    queue_size: int | None = Field(None, answers=False, ge=1, description="Items waiting for this kind; "
                                   "default: 2 x workers.")
    validators: ValidatorsConfig | None = Field(None, answers=True, description="Default: the flow's "
                                                "`validators`.")


class AgentInstructConfig(Strict):
    skills: list[str] = Field(answers=True, min_length=1, description="Skill folders to run, e.g. "
                              "reading_comprehension.")
    skills_dir: RelPath | None = Field(None, answers=True, description="Where skill folders live; default: "
                                       "the skills shipped with gristmill.")
    skills_per_seed: int | None = Field(None, answers=True, ge=1, description="Sample this many of the skills "
                                        "that accept a seed; default: every one.")
    skill_weights: dict[str, float] = Field(answers=True, default_factory=dict, description="With "
        "skills_per_seed: how often each skill is drawn for a seed, relative to the others "
        "(unlisted: 1; 0: never; a skill the run does not have is ignored, so `skills` can be "
        "narrowed without them); e.g. {conversation: 0.5, coding: 2}. Without weights each "
        "seed takes the next skills of a balanced cycle.")
    agents_per_seed: int = Field(2, answers=True, ge=1, le=50, description="Transformation agents per seed "
                                 "and skill.")
    agents: list[str] | None = Field(None, answers=True, min_length=1, description="Only these "
                                     "transformation agents (by name, e.g. poem, identity) "
                                     "in each skill; default: all of the skill's agents.")
    refine_rounds: int = Field(2, answers=True, ge=0, le=10, description="Suggester-editor rounds.")
    json_schema: bool = Field(True, answers=True, description="Request structured outputs with a JSON-schema "
                              "response_format; off: a tolerant parser reads prose.")
    max_chars: int | None = Field(None, answers=True, ge=1, description="maxLength of each string in the "
                                  "JSON lists (instructions, suggestions): a small model "
                                  "cannot run on inside one.")
    validators: ValidatorsConfig = Field(answers=True, default_factory=ValidatorsConfig, description="The "
                                         "checks on every kind's answers, unless a kind sets "
                                         "its own.")
    transform: KindSettings = Field(answers=True, default_factory=lambda: KindSettings(
        sampling=Sampling(temperature=0.7, max_tokens=1024)), description="Content "
        "transformation: an agent rewrites the seed (default sampling: temperature 0.7, "
        "max_tokens 1024).")
    generate: KindSettings = Field(answers=True, default_factory=lambda: KindSettings(
        sampling=Sampling(temperature=0.8, max_tokens=1024)), description="Instruction "
        "generation from the skill's taxonomy (default sampling: temperature 0.8, max_tokens "
        "1024).")
    suggest: KindSettings = Field(answers=True, default_factory=lambda: KindSettings(
        sampling=Sampling(temperature=0.7, max_tokens=512)), description="The suggester of "
        "each refinement round (default sampling: temperature 0.7, max_tokens 512).")
    edit: KindSettings = Field(answers=True, default_factory=lambda: KindSettings(
        sampling=Sampling(temperature=0.5, max_tokens=512)), description="The editor of each "
        "refinement round (default sampling: temperature 0.5, max_tokens 512).")
    answer: KindSettings = Field(answers=True, default_factory=lambda: KindSettings(
        sampling=Sampling(temperature=0.3, max_tokens=1024)), description="The answer to the "
        "final instruction (default sampling: temperature 0.3, max_tokens 1024).")

    def kinds(self) -> dict[str, KindSettings]:
        return {"transform": self.transform, "generate": self.generate,
                "suggest": self.suggest, "edit": self.edit, "answer": self.answer}

    @model_validator(mode="after")
    def _weights_fit(self) -> "AgentInstructConfig":
        if any(w < 0 for w in self.skill_weights.values()):
            raise ValueError("skill_weights: a weight is 0 (never) or more")
        if self.skill_weights and self.skills_per_seed is None:
            raise ValueError("skill_weights: weights choose among a seed's skills; set "
                             "skills_per_seed (e.g. 4) to draw that many per seed")
        return self


class DedupConfig(Strict):
    enabled: bool = Field(True, answers=False, description="At the end of a finished run, write dataset.jsonl "
                          "without exact and near-duplicate instructions (the smallest id of "
                          "each cluster is kept).")
    threshold: float = Field(0.8, answers=False, gt=0, le=1, description="Estimated Jaccard similarity of "
                             "word 5-gram sets above which two instructions are duplicates.")


class ErrorRateConfig(Strict):
    """When upstream errors mean an outage or a broken config rather than a few bad items."""

    rate: float = Field(0.5, answers=False, gt=0, le=1, description="Stop (exit 4) when more "
                        "than this share of a backend's last `window` requests ended in an "
                        "error after their retries. A healthy API fails a few percent of "
                        "items (context too long, content filter); half of them failing is "
                        "a systematic cause.")
    window: int = Field(200, answers=False, ge=10, le=1_000_000, description="Requests looked "
                        "at; none is judged before this many ended, so a burst of a few dozen "
                        "bad seeds (a cluster of long documents) does not stop a run.")


class MessageTemplate(Strict):
    role: Literal["system", "user", "assistant"] = Field(answers=True, description="The message's role.")
    content: str = Field(answers=True, description="Jinja2 template of the message; it sees what the stages "
                         "see, plus every stage's output by name.")


class PipelineConfig(Strict):
    name: str = Field(answers=False, pattern=r"^[A-Za-z0-9_.-]+$", description="Run name; the default run "
                      "directory is runs/<name>-<timestamp>.")
    seeds: SeedsConfig = Field(answers=True, description="Where the seed documents are and how they are "
                               "read, cleaned, chunked and deduplicated.")
    backends: dict[str, BackendConfig] = Field(answers=True, min_length=1, description="The model servers "
                                               "by name; stages, kinds and the judge use "
                                               "`default` unless they name another.")
    stages: list[StageConfig] = Field(answers=True, default_factory=list, description="A staged pipeline "
                                      "(or use `agentinstruct`).")
    agentinstruct: AgentInstructConfig | None = Field(None, answers=True, description="The AgentInstruct "
                                                      "flow over skills (instead of `stages`).")
    record: list[MessageTemplate] | None = Field(None, answers=True, description="The `messages` of each "
                                                 "output record; default: the second-to-last "
                                                 "stage as user, the last as assistant.")
    dedup: DedupConfig = Field(answers=False, default_factory=DedupConfig, description="Duplicate "
                               "instructions removed at the end of a finished run.")
    judge: JudgeConfig | None = Field(None, answers=True, description="An LLM judge of every record "
                                      "(see docs/judge.md); or the "
                                      "path of a judge file, e.g. RUN/judge/judge-v1.yaml.")
    grace_s: float = Field(30.0, answers=False, ge=0, description="On the first Ctrl-C, seconds to let "
                           "in-flight requests finish.")
    stop_on_error_rate: ErrorRateConfig | None = Field(
        answers=False, default_factory=ErrorRateConfig, description="The error-rate guard, per "
        "backend; validator and judge rejects never count. null: off.")
    target_records: int | None = Field(None, answers=False, ge=1, description="Stop admitting seeds once "
                                       "this many records are kept (after validators, the "
                                       "judge and dedup); dataset.jsonl gets exactly this many, "
                                       "the first in seed order. `--target-records` overrides "
                                       "it (docs/runs.md).")
    budget_usd: float | None = Field(None, answers=False, gt=0, description="A hard cap on "
                                     "the run's spend in USD, earlier sessions included: no "
                                     "request that could pass it is sent, and the run stops "
                                     "(exit 5) once the work in flight is done. Every model "
                                     "asked for needs a price. `--budget-usd` overrides it "
                                     "(docs/spend.md).")
    retrieval: RetrievalConfig | None = Field(None, answers=True, description="A BM25 index "
                                              "over the seeds for stages that `retrieve` "
                                              "(docs/retrieval.md).")
    cluster: ClusterConfig = Field(answers=False, default_factory=ClusterConfig, description=""
                                   "How `gristmill run --ray` splits the run over a Ray "
                                   "cluster (docs/cluster.md).")
    _base_dir: Path | None = PrivateAttr(None)  # the config file's folder (validator paths)

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_file(cls, value: Any, info: ValidationInfo) -> Any:
        """`judge: path.yaml` reads an aligned judge written by `gristmill judge align`."""
        if not isinstance(value, (str, Path)):
            return value
        from gristmill.config.yaml_file import read_yaml

        base = (info.context or {}).get("base_dir")  # relative to the config's folder
        path = Path(value).expanduser()
        path = path if path.is_absolute() or base is None else Path(base) / path
        try:
            return read_yaml(path)
        except ConfigError as exc:  # a ValueError, so the message names the field `judge`
            raise ValueError(f"cannot read the judge file {exc}; give a judge-v<N>.yaml written by "
                             "`gristmill judge align`") from None

    def _users(self) -> list[Any]:
        """Whatever sends requests to a backend: stages, AgentInstruct kinds, the judge."""
        users: list[Any] = list(self.stages)
        if self.agentinstruct is not None:
            users += self.agentinstruct.kinds().values()
        if self.judge is not None:
            users.append(self.judge)
        return users

    def client_name(self, user: Any) -> str:
        """The client a stage, kind or judge sends through: its backend's own, or the
        backend's twin in the other mode when it overrides `mode`."""
        mode = user.mode or self.backends[user.backend].mode
        return user.backend if mode == self.backends[user.backend].mode \
            else f"{user.backend}@{mode}"

    def client_configs(self) -> dict[str, tuple[str, BackendConfig]]:
        """Client name -> (backend name, its config in that client's mode). A backend in
        batch mode also gets an online twin when its batch files regenerate online."""
        out: dict[str, tuple[str, BackendConfig]] = {n: (n, b) for n, b in self.backends.items()}
        for user in self._users():
            name = self.client_name(user)
            if name not in out:
                out[name] = (user.backend, self.backends[user.backend].in_mode(user.mode))
        for backend, config in list(out.values()):
            if config.mode == "batch" and config.batch_files.regenerate == "online":
                out.setdefault(self.online_client(backend), (backend, config.in_mode("online")))
        return out

    def _modes_of(self, backend: str) -> set[str]:
        """The modes `backend`'s requests go in (its own, its users' overrides, where its
        batch files regenerate)."""
        own = self.backends[backend]
        modes = {u.mode or own.mode for u in self._users() if u.backend == backend}
        if "batch" in modes and own.batch_files.regenerate == "online":
            modes.add("online")
        return modes

    def online_client(self, backend: str) -> str:
        return backend if self.backends[backend].mode == "online" else f"{backend}@online"

    def models_by_backend(self) -> dict[str, set[str]]:
        """The model names each backend is asked for (stage, kind and judge overrides too)."""
        wanted: dict[str, set[str]] = {name: set() for name in self.backends}
        for user in self._users():
            wanted[user.backend].add(user.model or self.backends[user.backend].model)
        return {name: models for name, models in wanted.items() if models}

    @model_validator(mode="after")
    def _references(self) -> "PipelineConfig":
        if bool(self.stages) == (self.agentinstruct is not None):
            raise ValueError("give either `stages` (a staged pipeline) or `agentinstruct` "
                             "(the skills flow), not both and not neither")
        if self.agentinstruct is not None:
            for kind, settings in self.agentinstruct.kinds().items():
                if settings.backend not in self.backends:
                    raise ValueError(f"agentinstruct.{kind}.backend: {settings.backend!r} is not "
                                     f"defined; defined backends: {sorted(self.backends)}")
        join_assertion_criteria(self)
        if self.judge is not None:
            self._check_judge(self.judge)
        for index, stage in enumerate(self.stages):
            backend = self.backends.get(stage.backend)
            if stage.dialogue is not None and backend is not None and backend.api != "chat":
                raise ValueError(f"stages.{index}.dialogue: a conversation needs a chat "
                                 f"backend; backend {stage.backend!r} has api: {backend.api}")
        for name, backend in self.backends.items():
            if backend.kind == "vllm" and {"online", "batch"} <= self._modes_of(name):
                raise ValueError(f"backends.{name}: a kind: vllm backend runs `vllm serve` "
                                 "(online) or `vllm run-batch` (batch), not both: they would "
                                 "share its GPUs' memory; give every stage of it one mode")
        for user in self._users():
            backend = self.backends.get(user.backend)
            if backend is not None and user.mode == "batch" and backend.mode != "batch" \
                    and (backend.kind == "vllm-inproc" or backend.micro_batch is not None):
                raise ValueError(f"mode: batch needs a kind: openai or vllm backend without "
                                 f"micro_batch; backend {user.backend!r} is kind "
                                 f"{backend.kind}{' with micro_batch' if backend.micro_batch else ''}")
        names = [s.name for s in self.stages]
        for i, stage in enumerate(self.stages):
            if names.index(stage.name) != i:
                raise ValueError(f"stages[{i}].name: {stage.name!r} is used twice; stage names "
                                 "must be unique")
            if stage.name in RESERVED_NAMES:
                raise ValueError(f"stages[{i}].name: {stage.name!r} is reserved (reserved: "
                                 f"{', '.join(sorted(RESERVED_NAMES))}); pick another name")
            if stage.backend not in self.backends:
                raise ValueError(f"stages[{i}].backend: {stage.backend!r} is not defined; "
                                 f"defined backends: {sorted(self.backends)}")
            if stage.retrieve is not None and self.retrieval is None:
                raise ValueError(f"stages[{i}].retrieve: needs the index over the seeds; add "
                                 "a top-level `retrieval: {}` section")
        self._check_prices()  # after the references: it looks up every backend named
        return self

    def _check_prices(self) -> None:
        from gristmill.config.prices import require_prices

        try:
            require_prices(self, self.budget_usd, "budget_usd")
        except ConfigError as exc:  # a ValueError names the field in the config's errors
            raise ValueError(str(exc)) from None

    def _check_judge(self, judge: JudgeConfig) -> None:
        if judge.backend not in self.backends:
            raise ValueError(f"judge.backend: {judge.backend!r} is not defined; defined "
                             f"backends: {sorted(self.backends)}")
        skills = sorted(self.agentinstruct.skills) if self.agentinstruct else []
        known = ", ".join(skills) or "none: a staged pipeline has no skills; use judge.criteria"
        for skill in judge.skills:
            if skill not in skills:
                raise ValueError(f"judge.skills.{skill}: not a skill of this run (its skills: "
                                 f"{known})")
