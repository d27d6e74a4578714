"""`gristmill run CONFIG --dry-run`: show the prompts of the first seeds and estimate the
requests and tokens of the whole run, without calling a model.

Outputs of earlier steps are unknown before a run, so prompts show them as placeholders and the
token estimate assumes every answer uses its whole max_tokens: an upper bound."""

from __future__ import annotations

import functools
import itertools
from typing import Any, Iterator

from gristmill.config.pipeline import PipelineConfig
from gristmill.seeds import SeedSource
from gristmill.flows.templates import compile_template
from gristmill.scheduling.tokens import counter_for, count_messages


def _placeholder(name: str) -> str:
    return f"<{name} output>"


def _seeds(config: PipelineConfig, limit: int | None) -> Iterator[Any]:
    seeds = iter(SeedSource(config.seeds))
    return itertools.islice(seeds, limit) if limit else seeds


def _count(config: PipelineConfig, text: str, backend: str | None = None) -> int:
    """Tokens of `text` with the tokenizer of `backend` (exact when it has one)."""
    settings = config.backends[backend] if backend else next(iter(config.backends.values()))
    return _counter(str(settings.tokenizer) if settings.tokenizer else None)(text)


@functools.lru_cache(maxsize=8)
def _counter(tokenizer: str | None) -> Any:
    return counter_for(tokenizer)


def _step(steps: dict[str, dict[str, Any]], name: str, config: PipelineConfig, backend: str,
          model: str | None, requests: int, prompt_tokens: int, completion_tokens: int) -> None:
    """Add to the tally of one step (a stage, a kind, the judge): its backend and model
    price it (runs/cost_plan.py)."""
    step = steps.setdefault(name, {"backend": backend,
                                   "model": model or config.backends[backend].model,
                                   "requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
    step["requests"] += requests
    step["prompt_tokens"] += prompt_tokens
    step["completion_tokens"] += completion_tokens


def _totals(steps: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {k: sum(s[k] for s in steps.values())
            for k in ("requests", "prompt_tokens", "completion_tokens")}


def staged_plan(config: PipelineConfig, limit: int | None, show: int) -> dict[str, Any]:
    shown, steps, seeds, records = [], {}, 0, 0  # type: ignore[var-annotated]
    for index, seed in enumerate(_seeds(config, limit)):
        seeds += 1
        values: dict[str, Any] = {**seed.template_values(), "id": seed.id, "seed_id": seed.id}
        units = 1
        for stage in config.stages:
            units *= stage.fan_out
            values = {**values, "variant": 0}
            if stage.retrieve is not None:  # unknown before the index is built
                values.update(_retrieved(stage.retrieve))
            system = compile_template(stage.system).render(values) if stage.system else ""
            user = compile_template(stage.prompt).render(values)
            max_tokens = stage.sampling.max_tokens or config.backends[stage.backend].default_max_tokens
            prompt = count_messages(
                [{"content": system}, {"content": user}] if system else [{"content": user}],
                lambda t: _count(config, t, stage.backend))
            _step(steps, stage.name, config, stage.backend, stage.model, units,
                  units * prompt, units * max_tokens)
            if index < show:
                shown.append({"seed": seed.source, "stage": stage.name, "system": system,
                              "prompt": user})
            values[stage.name] = _placeholder(stage.name)
            if stage.output.type == "list":
                units *= stage.output.max_items
        records += units  # what the last stage passes on: every answer kept, lists full
    return {"seeds": seeds, **_totals(steps), "records": records, "prompts": shown,
            "steps": steps}


def _retrieved(retrieve: Any) -> dict[str, list[dict[str, str]]]:
    return {name: [{"id": f"<{name[:-1]} id>", "text": f"<retrieved {name[:-1]}>"}] * n
            for name, n in (("passages", retrieve.k), ("distractors", retrieve.distractors))}


def _filler(tokens: int) -> str:
    """Text of about `tokens` tokens by the 4-characters estimate: a stand-in for an answer."""
    return "word " * max(1, tokens * 4 // 5)


def _unit_prompt_tokens(config: PipelineConfig, skill: Any, agent: Any, types: list[dict],
                        values: dict[str, Any], max_tokens: dict[str, int]) -> dict[str, int]:
    """Prompt tokens of each kind's request for one unit, outputs at their max length."""
    assert config.agentinstruct is not None
    kinds = config.agentinstruct.kinds()
    text = values["seed"] if agent.identity else _filler(max_tokens["transform"])
    instruction = _filler(max_tokens["edit"])
    per_kind = {
        "transform": ({}, agent.system or skill.transform.system, agent.prompt or ""),
        "generate": ({"text": text, "types": types, "n": len(types)}, skill.generate.system,
                     skill.generate.prompt),
        "suggest": ({"text": text, "instruction": instruction, "type": types[0],
                     "goals": skill.refine.goals[:2], "round": 1},
                    skill.refine.suggest.system, skill.refine.suggest.prompt),
        "edit": ({"text": text, "instruction": instruction, "type": types[0],
                  "suggestions": [_filler(40)] * 2, "round": 1},
                 skill.refine.edit.system, skill.refine.edit.prompt),
        "answer": ({"text": text, "instruction": instruction, "type": types[0],
                    # the single-message form when a share of answers are dialogues; no
                    # passages (they are retrieved at run time)
                    "dialogue": skill.answer.dialogue is not None
                    and skill.answer.dialogue_share is None,
                    "passages": [], "distractors": []},
                   skill.answer.system, skill.answer.prompt),
    }
    tokens = {}
    for kind, (extra, system, prompt) in per_kind.items():
        v = {**values, **extra}
        messages = [{"content": compile_template(prompt).render(v)}]
        if system:
            messages.append({"content": compile_template(system).render(v)})
        tokens[kind] = count_messages(messages, functools.partial(_count, config,
                                                                  backend=kinds[kind].backend))
    return tokens


def flow_plan(config: PipelineConfig, limit: int | None, show: int) -> dict[str, Any]:
    from gristmill.flows.agentinstruct import Flow
    from gristmill.flows.sampling import CHOICE_RULES, choice_index

    ai = config.agentinstruct
    assert ai is not None
    flow = Flow(ai)
    max_tokens = {k: s.sampling.max_tokens or config.backends[s.backend].default_max_tokens
                  for k, s in ai.kinds().items()}
    kinds = ai.kinds()
    shown, steps, seeds, records = [], {}, 0, 0  # type: ignore[var-annotated]
    for index, seed in enumerate(_seeds(config, limit)):
        seeds += 1
        kind = getattr(seed, "kind", "prose")
        for skill, agent, generation in flow.assignments(
                kind, choice_index(CHOICE_RULES[0], seed.id, index)):
            types = flow.types_for(skill, generation)
            values = {**seed.template_values(), "skill": skill.name, "agent": agent.name}
            calls = {"transform": 0 if agent.identity else 1, "generate": 1,
                     "suggest": len(types) * ai.refine_rounds,
                     "edit": len(types) * ai.refine_rounds, "answer": len(types)}
            prompts = _unit_prompt_tokens(config, skill, agent, types, values, max_tokens)
            records += len(types)  # an answer, a record, per instruction type
            for k, n in calls.items():
                _step(steps, k, config, kinds[k].backend, kinds[k].model, n, n * prompts[k],
                      n * max_tokens[k])
            if index < show:
                shown.append({
                    "seed": seed.source, "skill": skill.name, "agent": agent.name,
                    "types": [t["name"] for t in types],
                    "transform_prompt": "(identity: the seed itself)" if agent.identity else
                    compile_template(agent.prompt or "").render(values),
                    "generate_prompt": compile_template(skill.generate.prompt).render(
                        {**values, "text": _placeholder("transform"), "types": types,
                         "n": len(types)})})
    return {"seeds": seeds, **_totals(steps), "records": records, "prompts": shown,
            "steps": steps}


def judge_step(config: PipelineConfig, plan: dict[str, Any]) -> None:
    """The judge's requests: one per record (regenerations after an unparseable verdict
    not counted). Its prompt: the judge prompt around an instruction and an answer at
    their max lengths, with the config's first few-shot examples."""
    from gristmill.flywheel.fewshot import Example
    from gristmill.flywheel.prompt import DEFAULT_SYSTEM, render_prompt

    judge = config.judge
    assert judge is not None
    backend = config.backends[judge.backend]
    lengths = [s["completion_tokens"] // max(1, s["requests"]) for s in plan["steps"].values()]
    instruction, answer = _filler(lengths[-2] if len(lengths) > 1 else 0), _filler(lengths[-1])
    cut = judge.few_shot.max_chars
    examples = [Example(e.record_id, e.instruction[:cut], e.answer[:cut], e.passed, e.critique,
                        e.criterion, e.labeled_at, e.disagreed)
                for e in judge.examples[:judge.few_shot.k]]
    prompt = render_prompt(judge.criteria, examples, "", instruction, answer)
    tokens = count_messages([{"content": judge.system or DEFAULT_SYSTEM}, {"content": prompt}],
                            functools.partial(_count, config, backend=judge.backend))
    n = plan["records"]
    max_tokens = judge.sampling.max_tokens or backend.default_max_tokens
    _step(plan["steps"], "judge", config, judge.backend, judge.model, n, n * tokens,
          n * max_tokens)
    plan.update(_totals(plan["steps"]))


def dry_run(config: PipelineConfig, limit: int | None = None, show: int = 2) -> dict[str, Any]:
    plan = (flow_plan if config.agentinstruct is not None else staged_plan)(config, limit, show)
    if config.judge is not None and config.judge.enabled:
        judge_step(config, plan)
    return plan
