"""The AgentInstruct flow as pipeline stages: plan -> transform -> generate ->
(suggest -> edit) x rounds -> answer. Stage kinds are generic; every prompt, agent and
instruction type comes from the skill folders (`engine/flows/skills.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import orjson

from gristmill.scheduling.client import ModelClient
from gristmill.config.pipeline import (AgentInstructConfig, KindSettings, OutputConfig,
                                       PipelineConfig, ValidatorsConfig)
from gristmill.protocol import Completion
from gristmill.validation.shapes import at
from gristmill.errors import ConfigError
from gristmill.dataset.records import output_record
from gristmill.flows.items import Item
from gristmill.flows.dialogue import Conversation, DialoguePlan
from gristmill.flows.outputs import item_format, response_format
from gristmill.flows.skills import Skill, load_skill
from gristmill.flows.stage import ModelStage, RejectSink
from gristmill.flows.stats import RunStats, StageStats
from gristmill.seeds.report import Seed
from gristmill.flows.templates import compile_template
from gristmill.validation.stage import StageValidation, ValidationStats
from gristmill.flows.sampling import item_rng, shuffled, weighted_sample, window

GOALS_PER_ROUND = 2


class Flow:
    """The loaded skills and the sampling plan over them."""

    def __init__(self, config: AgentInstructConfig) -> None:
        self.config = config
        self.skills = {name: load_skill(name, config.skills_dir) for name in config.skills}
        self.agent_cycles = {n: shuffled(chosen_agents(s, config.agents), f"{n}:agents")
                             for n, s in self.skills.items()}
        self.type_cycles = {n: shuffled(s.types(), f"{n}:types") for n, s in self.skills.items()}

    def assignments(self, kind: str, seed_index: int) -> list[tuple[Skill, Any, int]]:
        """(skill, agent, generation index) for every unit of work one seed starts."""
        accepting = [s for s in self.skills.values() if kind in s.accepts]
        per_seed, weights = self.config.skills_per_seed, self.config.skill_weights
        if per_seed is not None and accepting and weights:
            accepting = weighted_sample(accepting, [weights.get(s.name, 1.0) for s in accepting],
                                        seed_index, per_seed)
        elif per_seed is not None and accepting:
            accepting = window(accepting, seed_index, per_seed)
        units = []
        for skill in accepting:
            agents = window(self.agent_cycles[skill.name], seed_index, self.config.agents_per_seed)
            for slot, agent in enumerate(agents):
                units.append((skill, agent, seed_index * self.config.agents_per_seed + slot))
        return units

    def types_for(self, skill: Skill, generation_index: int) -> list[dict[str, str]]:
        return window(self.type_cycles[skill.name], generation_index,
                      skill.generate.types_per_request)


def chosen_agents(skill: Skill, names: list[str] | None) -> list[Any]:
    """The skill's transformation agents, only those named when `names` is given."""
    if names is None:
        return list(skill.transform.agents)
    agents = [a for a in skill.transform.agents if a.name in names]
    if not agents:
        available = ", ".join(a.name for a in skill.transform.agents)
        raise ConfigError(f"agentinstruct.agents: skill {skill.name!r} has none of "
                          f"{', '.join(names)}; its agents are: {available}")
    return agents


def variables(item: Item, **extra: Any) -> dict[str, Any]:
    return {**item.values, **extra}


class PlanStage:
    """Fan a seed out to its (skill, agent) units. No model call."""

    def __init__(self, flow: Flow, stats: StageStats) -> None:
        self.name, self.depth, self.fan_out = "plan", 0, 1
        self.workers, self.queue_size = 1, 16
        self.parks = False
        self.flow = flow
        self.stats = stats

    async def process(self, item: Item, variant: int) -> list[Item]:
        units = self.flow.assignments(item.values["kind"], item.values["seed_index"])
        children = []
        for skill, agent, generation in units:
            child = item.child("plan", f"{skill.name}/{agent.name}", skill.name, key="skill")
            child.values["agent"] = agent.name
            child.values["generation"] = generation
            children.append(child)
        self.stats.emitted += len(children)
        return children


class KindStage(ModelStage):
    """A model stage of the flow, configured by its kind's settings."""

    def __init__(self, name: str, depth: int, flow: Flow, settings: KindSettings,
                 client: ModelClient, model: str, api: str, stats: StageStats,
                 reject: RejectSink, validation: StageValidation) -> None:
        super().__init__(name, depth, client, model, api, stats, reject,
                         sampling=settings.sampling, stream=settings.stream,
                         workers=settings.workers, queue_size=settings.queue_size,
                         validation=validation)
        self.flow = flow

    def skill(self, item: Item) -> Skill:
        return self.flow.skills[item.values["skill"]]

    def list_output(self, least: int, most: int) -> OutputConfig:
        return OutputConfig(type="list", min_items=least, max_items=most,
                            max_chars=self.flow.config.max_chars,
                            json_schema=self.flow.config.json_schema)

    async def ask_and_make(self, item: Item, system: str | None, prompt: str,
                           values: dict[str, Any], key: str, output: OutputConfig | None = None,
                           wrap: bool = False,
                           checks: StageValidation | None = None) -> list[Item]:
        """Render, call, parse, and make the children (values[key] = each output; `wrap`:
        one child holding the whole list). None of them when the item became a reject.
        A `type: json` output whose `format` is a template is asked under its rendering."""
        output = output or OutputConfig()
        fmt = response_format(output)
        if output.type == "json" and isinstance(output.format, str):
            try:
                fmt = item_format(compile_template(output.format), values)
            except ValueError as error:
                self.reject_item(item, 0, {"validator": "format"}, str(error), 1, "")
                return []
        request = self.request(compile_template(system).render(values) if system else None,
                               compile_template(prompt).render(values), fmt)
        completion = await self.ask(item, 0, request, checks=checks)
        if completion is None:
            return []
        outputs = self.parse(item, 0, output, completion)
        if outputs is None:
            return []
        return self.children(item, 0, completion, [outputs] if wrap else outputs, key)


class TransformStage(KindStage):
    async def process(self, item: Item, variant: int) -> list[Item]:
        skill = self.skill(item)
        agent = next(a for a in skill.transform.agents if a.name == item.values["agent"])
        if agent.identity:
            return self.children(item, variant, None, [item.values["seed"]], key="text")
        children = await self.ask_and_make(item, agent.system or skill.transform.system,
                                           agent.prompt or "", variables(item), "text",
                                           skill.transform.output)
        for child in children:  # JSON (an API list...) is text to the later templates
            if not isinstance(child.values["text"], str):
                child.values["text"] = orjson.dumps(child.values["text"],
                                                    option=orjson.OPT_INDENT_2).decode()
        return children


class GenerateStage(KindStage):
    async def process(self, item: Item, variant: int) -> list[Item]:
        skill = self.skill(item)
        types = self.flow.types_for(skill, item.values["generation"])
        children = await self.ask_and_make(item, skill.generate.system, skill.generate.prompt,
                                           variables(item, types=types, n=len(types)),
                                           "instruction", self.list_output(len(types), len(types)))
        for child, type_ in zip(children, types):
            child.values["type"] = type_
            child.values["history"] = [{"round": 0, "instruction": child.values["instruction"]}]
        return children


class SuggestStage(KindStage):
    def __init__(self, round_: int, *args: Any) -> None:
        super().__init__(*args)
        self.round = round_

    async def process(self, item: Item, variant: int) -> list[Item]:
        skill = self.skill(item)
        goals = skill.refine.goals
        goals = item_rng(item.id, f"goals{self.round}").sample(goals, min(GOALS_PER_ROUND, len(goals)))
        return await self.ask_and_make(item, skill.refine.suggest.system,
                                       skill.refine.suggest.prompt,
                                       variables(item, goals=goals, round=self.round),
                                       "suggestions", self.list_output(1, 3), wrap=True)


class EditStage(KindStage):
    def __init__(self, round_: int, *args: Any) -> None:
        super().__init__(*args)
        self.round = round_

    async def process(self, item: Item, variant: int) -> list[Item]:
        skill = self.skill(item)
        children = await self.ask_and_make(item, skill.refine.edit.system,
                                           skill.refine.edit.prompt,
                                           variables(item, round=self.round), "instruction")
        for child in children:
            child.values["history"] = item.values["history"] + [{
            "round": self.round, "suggestions": item.values["suggestions"],
            "instruction": child.values["instruction"]}]
        return children


class AnswerStage(KindStage):
    """Answers each instruction as its skill says: text, JSON under a (per-item) format, or a
    dialogue; with passages retrieved first, and the skill's own checks on top of the flow's."""

    def __init__(self, *args: Any, native_tools: bool, checks: ValidatorsConfig,
                 validation_stats: ValidationStats, base_dir: Path | None,
                 index: Any = None) -> None:
        super().__init__(*args)
        self.native_tools = native_tools
        self.plans: dict[str, DialoguePlan] = {}
        self.checks: dict[str, StageValidation | None] = {}
        self.retrievals: dict[str, Any] = {}
        for skill in self.flow.skills.values():
            answer = skill.answer
            if answer.dialogue is not None:
                self.plans[skill.name] = DialoguePlan(answer.dialogue, native_tools)
            self.checks[skill.name] = None if not answer.validators else StageValidation(
                checks.model_copy(update={"final": [*checks.final, *answer.validators]}),
                self.name, validation_stats, base_dir, question="instruction")
            if answer.retrieve is not None:
                if index is None:
                    raise ConfigError(f"skill {skill.name!r} retrieves passages for its "
                                      "answers: add `retrieval: {}` to the config (the index "
                                      "over the seeds, docs/retrieval.md)")
                from gristmill.retrieval.stage import Retrieval  # bm25s: only when used

                self.retrievals[skill.name] = Retrieval(self.name, answer.retrieve, index)

    async def process(self, item: Item, variant: int) -> list[Item]:
        skill = self.skill(item)
        answer = skill.answer
        if skill.name in self.retrievals:
            item = await self.retrievals[skill.name](item)
        talks = self.talks(item, skill)
        values = variables(item, dialogue=talks)
        checks = self.checks[skill.name]
        if talks:
            return await self.converse(item, skill, values, checks)
        return await self.ask_and_make(item, answer.system, answer.prompt, values, "answer",
                                       answer.output, checks=checks)

    def talks(self, item: Item, skill: Skill) -> bool:
        """Whether this item's answer is a dialogue: every item's, or a `dialogue_share` of
        them drawn from the item's id (a rerun draws the same)."""
        share = skill.answer.dialogue_share
        return skill.name in self.plans and (
            share is None or item_rng(item.id, "answer:dialogue").random() < share)

    async def converse(self, item: Item, skill: Skill, values: dict[str, Any],
                       checks: StageValidation | None) -> list[Item]:
        answer = skill.answer
        opening = self.request(compile_template(answer.system).render(values)
                               if answer.system else None,
                               compile_template(answer.prompt).render(values))
        talk = Conversation(self, self.plans[skill.name], item, 0, opening, checks)
        outcome = await talk.play()
        if outcome is None:
            return []
        spent = Completion("", "stop", talk.usage, talk.model)
        [child] = self.children(item, 0, spent, [outcome["messages"][-1]["content"]], "answer")
        child.values["conversation"] = outcome
        return [child]


def build_stages(config: PipelineConfig, flow: Flow, clients: dict[str, ModelClient],
                 stats_for: Callable[[str], StageStats], reject: RejectSink,
                 validation_stats: ValidationStats, index: Any = None) -> list[Any]:
    ai = config.agentinstruct
    assert ai is not None

    def make(cls: type, name: str, kind: str, depth: int, *lead: Any, **extra: Any) -> KindStage:
        settings = ai.kinds()[kind]
        backend = config.backends[settings.backend]
        validation = StageValidation(settings.validators or ai.validators, name,
                                     validation_stats, config._base_dir,
                                     question="instruction" if kind == "answer" else None)
        if kind == "answer":
            extra = {"native_tools": backend.tools_native, "base_dir": config._base_dir,
                     "validation_stats": validation_stats,
                     "checks": settings.validators or ai.validators, **extra}
        return cls(*lead, name, depth, flow, settings, clients[config.client_name(settings)],
                   settings.model or backend.model, backend.api, stats_for(name), reject,
                   validation, **extra)

    stages: list[Any] = [PlanStage(flow, stats_for("plan")),
                         make(TransformStage, "transform", "transform", 1),
                         make(GenerateStage, "generate", "generate", 2)]
    for r in range(1, ai.refine_rounds + 1):
        stages.append(make(SuggestStage, f"suggest_{r}", "suggest", len(stages), r))
        stages.append(make(EditStage, f"edit_{r}", "edit", len(stages), r))
    stages.append(make(AnswerStage, "answer", "answer", len(stages), index=index))
    return stages


def first_item(seed: Seed, index: int) -> Item:
    """A seed's item; its choice index (`seed_index`, flows/sampling.py) picks its skills,
    agents and instruction types."""
    return Item(seed.id, seed.id, {**seed.template_values(), "seed_index": index},
                [(seed.id, "seed")])


def new_stats(config: AgentInstructConfig, limit: int | None) -> RunStats:
    return RunStats([StageStats(n) for n in stage_names(config)], seeds_expected=limit)


def stage_names(config: AgentInstructConfig) -> list[str]:
    rounds = [n for r in range(1, config.refine_rounds + 1) for n in (f"suggest_{r}", f"edit_{r}")]
    return ["plan", "transform", "generate", *rounds, "answer"]


def _first_user(messages: list[dict[str, Any]]) -> int:
    return next(i for i, m in enumerate(messages) if m["role"] == "user")


def make_record(flow: Flow) -> Callable[[Item], dict[str, Any]]:
    def record(item: Item) -> dict[str, Any]:
        skill = flow.skills[item.values["skill"]]
        talk = item.values.get("conversation")
        values = variables(item, dialogue=talk is not None)
        messages = []
        if skill.record.system:
            messages.append({"role": "system",
                             "content": compile_template(skill.record.system).render(values)})
        messages.append({"role": "user", "content": compile_template(skill.record.user).render(values)})
        extra: dict[str, Any] = {}
        if talk is not None:  # after its opening (the record's own system and user message)
            messages.extend(talk["messages"][1 + _first_user(talk["messages"]):])
            if talk.get("tools"):
                extra["tools"] = talk["tools"]
        else:
            answer = item.values["answer"]
            messages.append({"role": "assistant", "content": answer if isinstance(answer, str)
                             else orjson.dumps(answer).decode()})
        record = output_record(item, messages, **extra, skill=skill.name,
                               agent=item.values["agent"], type=item.values["type"]["name"],
                               instruction=item.values["instruction"],
                               **{name: at(values, path)
                                  for name, path in skill.record.fields.items()})
        record["refinements"] = item.values["history"][1:]
        return record
    return record
