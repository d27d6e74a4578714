"""A stage whose answer is a conversation: the stage's prompt opens it, the assistant answers,
a simulated user follows up for a number of turns drawn from the item's id, and when tools are
offered the assistant may call them and a simulated API answers each call.

Every model call (assistant, user simulator, tool simulator) is its own request through the
client, so each is cached as it is answered: an item interrupted mid-dialogue replays the
turns it had from the cache and goes on from the turn it reached. Assistant turns are checked
like any answer (text by the stage's validators, calls against the offered tools)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from gristmill.config.dialogue import DialogueConfig
from gristmill.errors import BackendError, InvalidOutput
from gristmill.flows.items import Item
from gristmill.flows.sampling import item_rng
from gristmill.flows.stage import ModelStage, TemplateStage
from gristmill.flows.templates import compile_template
from gristmill.flows import tools as toolkit
from gristmill.protocol import Completion, Request, Usage
from gristmill.validation.stage import StageValidation

Messages = list[dict[str, Any]]


class DialoguePlan:
    """A `dialogue:` ready to play: its simulators' templates, the tools it offers and how
    they reach the model (`native`: the API's tools field; else the prompted format)."""

    def __init__(self, dialogue: DialogueConfig, native: bool) -> None:
        self.config = dialogue
        self.native = native
        self.user_templates = (compile_template(dialogue.user.system),
                               compile_template(dialogue.user.prompt))
        self._offer: Any = None
        if dialogue.tools is not None:
            simulator = dialogue.tools.simulator
            self.tool_templates = (compile_template(simulator.system),
                                   compile_template(simulator.prompt))
            offer = dialogue.tools.offer
            self._offer = compile_template(offer) if isinstance(offer, str) else offer

    def tools_for(self, variables: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The tools offered to this item (ValueError when they are not tools)."""
        if self._offer is None:
            return None
        raw = self._offer if isinstance(self._offer, list) else self._offer.render(variables)
        return toolkit.checked_tools(raw)


class DialogueStage(TemplateStage):
    """`dialogue:` of a staged pipeline's stage. Its output (values[name]) is
    {"messages": [...], "tools": [...] or None}."""

    def __init__(self, *args: Any, native_tools: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.config.dialogue is not None
        self.plan = DialoguePlan(self.config.dialogue, native_tools)

    async def process(self, item: Item, variant: int) -> list[Item]:
        if self.retrieve is not None:
            item = await self.retrieve(item)
        run = Conversation(self, self.plan, item, variant, self.build_request(item, variant))
        outcome = await run.play()
        if outcome is None:
            return []
        spent = Completion("", "stop", run.usage, run.model)
        return self.children(item, variant, spent, [outcome])


class Conversation:
    """One item's dialogue as it is played by a model stage (its client, checks and rejects),
    opened by `opening` (the stage's request: system message, first user turn, sampling)."""

    def __init__(self, stage: ModelStage, plan: DialoguePlan, item: Item, variant: int,
                 opening: Request, checks: StageValidation | None = None) -> None:
        self.stage, self.plan, self.item, self.variant = stage, plan, item, variant
        self.opening = opening
        self.checks = checks  # in place of the stage's own (a skill's answers)
        self.variables = {**item.values, "variant": variant, "id": item.id,
                          "seed_id": item.seed_id}
        self.usage = Usage()
        self.model = stage.model
        self.messages: Messages = []

    async def play(self) -> dict[str, Any] | None:
        stage, dialogue = self.stage, self.plan.config
        try:
            tools = self.plan.tools_for(self.variables)
        except ValueError as error:
            stage.reject_item(self.item, self.variant, {"validator": "tools"}, str(error), 1, "")
            return None
        self.messages = list(self.opening.messages or [])
        turns = item_rng(self.item.id, f"{stage.name}:turns").randint(dialogue.turns.min,
                                                                      dialogue.turns.max)
        for turn in range(1, turns + 1):
            if turn > 1:
                said = await self.simulated_user(turn, turns)
                if said is None:
                    return None
                if dialogue.stop is not None and said.strip().strip(".") == dialogue.stop:
                    break
                self.messages.append({"role": "user", "content": said})
            if not await self.assistant_turn(turn, tools):
                return None
        return {"messages": self.messages, "tools": tools}

    async def assistant_turn(self, turn: int, tools: list[dict[str, Any]] | None) -> bool:
        """The assistant's answer to the last user message, after its tool rounds."""
        rounds = self.plan.config.tools.max_rounds if tools else 0
        for round_ in range(rounds + 1):
            may_call = round_ < rounds
            request, read = self.assistant_request(tools, may_call, f"{turn}.{round_}")
            completion = await self.stage.ask(self.item, self.variant, request,
                                              tools if may_call else None, read, self.checks)
            if completion is None:
                return False
            self.spent(completion)
            if not completion.tool_calls:
                self.messages.append({"role": "assistant", "content": completion.text})
                return True
            self.messages.append({"role": "assistant", "content": None,
                                  "tool_calls": completion.tool_calls})
            for call in completion.tool_calls:
                result = await self.simulated_tool(tools or [], call)
                if result is None:
                    return False
                self.messages.append({"role": "tool", "tool_call_id": call["id"],
                                      "content": result})
        return False  # not reached: the last round offers no tools

    def assistant_request(self, tools: list[dict[str, Any]] | None, may_call: bool,
                          turn: str) -> tuple[Request, Any]:
        request = replace(self.opening, messages=list(self.messages))
        if not tools:
            return request, None
        if self.plan.native:
            request.messages, request.tools = list(self.messages), tools
            if not may_call:
                request.params = {**request.params, "tool_choice": "none"}
            return request, None
        system = self.messages[0]["content"] if self.messages[0]["role"] == "system" else None
        rest = self.messages[1:] if system is not None else self.messages
        request.messages = [{"role": "system", "content": toolkit.prompted_system(system, tools)},
                            *toolkit.prompted_messages(rest)]
        request.response_format = toolkit.prompted_format(tools, may_call)
        return request, lambda completion: self.read_prompted(completion, turn)

    def read_prompted(self, completion: Completion, turn: str) -> Completion:
        try:
            text, calls = toolkit.read_prompted(completion.text, self.item.id, turn)
        except ValueError as error:
            raise InvalidOutput(str(error), text=completion.text, validator="tool_calls") from None
        return Completion(text, completion.finish_reason, completion.usage, completion.model,
                          completion.cached, calls)

    async def simulated_user(self, turn: int, turns: int) -> str | None:
        system, prompt = self.plan.user_templates
        values = {**self.variables, "transcript": toolkit.transcript(self.messages),
                  "turn": turn, "turns": turns, "stop": self.plan.config.stop or ""}
        return await self.simulate(system.render(values), prompt.render(values), "user")

    async def simulated_tool(self, tools: list[dict[str, Any]], call: dict[str, Any]) -> str | None:
        system, prompt = self.plan.tool_templates
        function = call["function"]
        rate = self.plan.config.tools.simulator.failure_rate
        fail = item_rng(self.item.id, f"{self.stage.name}:fail:{call['id']}").random() < rate
        tool = toolkit.tool_of(tools, function["name"])
        values = {**self.variables, "transcript": toolkit.transcript(self.messages),
                  "tool": orjson.dumps(tool["function"]).decode(), "name": function["name"],
                  "arguments": function["arguments"], "fail": fail}
        return await self.simulate(system.render(values), prompt.render(values), "tool")

    async def simulate(self, system: str, prompt: str, who: str) -> str | None:
        """A simulator's text (its own cached request, not checked by the stage's validators:
        it plays a part, it is not the answer), None after recording a reject."""
        stage = self.stage
        request = stage.request(system, prompt)
        try:
            completion = await stage.client.call(request, stage.depth)
        except BackendError as error:
            stage.reject_item(self.item, self.variant, {"error": type(error).__name__},
                              f"{who} simulator: {error}", error.attempts, "")
            return None
        self.spent(completion)
        stage.count_tokens(completion)
        if not completion.text.strip():
            stage.reject_item(self.item, self.variant, {"validator": f"{who}_simulator"},
                              f"the {who} simulator said nothing", 1, "")
            return None
        return completion.text.strip()

    def spent(self, completion: Completion) -> None:
        self.usage.prompt_tokens += completion.usage.prompt_tokens
        self.usage.completion_tokens += completion.usage.completion_tokens
        self.model = completion.model or self.model
