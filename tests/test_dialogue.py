"""Dialogue stages on a scripted backend (virtual clock): turns drawn from the item, the stop
word, tool rounds in OpenAI's format (native and prompted), simulated failures, calls checked
against the offered tools, and nothing left in flight."""

from __future__ import annotations

from typing import Any

import orjson

from gristmill.config.pipeline import StageConfig
from gristmill.flows.dialogue import DialogueStage
from gristmill.flows.items import Item
from gristmill.flows.sampling import item_rng
from gristmill.flows.stats import StageStats
from gristmill.protocol import Request
from gristmill.validation.stage import StageValidation, ValidationStats
from tests.scripted import ScriptedBackend, Step, assert_settled, make_client

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def call(name: str = "get_weather", arguments: str = '{"city": "Oslo"}', id_: str = "c1"):
    return [{"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}]


def role_of(request: Request) -> str:
    system = (request.messages or [{}])[0].get("content") or ""
    if "You play the user" in system:
        return "user"
    if "You simulate an API" in system:
        return "tool"
    return "assistant"


def script(user: str = "And tomorrow?", calls: Any = None, prompted_call: bool = False):
    """Users follow up with `user`; tools answer JSON; the assistant calls `calls` (or the
    weather tool) when the last message is the user's and tools are offered."""
    def step(request: Request, index: int) -> Step:
        who = role_of(request)
        if who == "user":
            return Step(text=user)
        if who == "tool":
            return Step(text='{"temp": 3}')
        last = request.messages[-1]
        if request.tools and last["role"] == "user" and \
                request.params.get("tool_choice") != "none":
            return Step(text="", finish_reason="tool_calls", tool_calls=calls or call())
        if prompted_call and last["role"] == "user" and not last["content"].startswith("Tool"):
            return Step(text=orjson.dumps({"tool_calls": [{"name": "get_weather", "arguments":
                                                           {"city": "Oslo"}}],
                                           "answer": ""}).decode())
        if request.response_format is not None:
            return Step(text='{"tool_calls": [], "answer": "It is cold."}')
        return Step(text="It is cold in Oslo today.")
    return step


def make_stage(backend: ScriptedBackend, dialogue: dict[str, Any], native: bool = True,
               **spec: Any) -> tuple[DialogueStage, list[dict[str, Any]], Any]:
    config = StageConfig.model_validate({"name": "chat", "system": "Be helpful.",
                                         "prompt": "{{ seed }}", "dialogue": dialogue, **spec})
    rejects: list[dict[str, Any]] = []
    client = make_client(backend)
    validation = StageValidation(config.validators, "chat", ValidationStats())
    stage = DialogueStage(config, 0, client, "m", "chat", StageStats("chat"), rejects.append,
                          validation, native_tools=native)
    return stage, rejects, client


def item(n: int = 1) -> Item:
    return Item(f"item{n}", f"item{n}", {"seed": "What is the weather in Oslo?", "kind": "prose",
                                          "language": "en"})


def users(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_turns_are_drawn_per_item_and_roles_alternate():
    backend = ScriptedBackend(script())
    stage, rejects, client = make_stage(backend, {"turns": {"min": 2, "max": 5}, "stop": None})
    for n in range(6):
        [child] = await stage.process(item(n), 0)
        messages = child.values["chat"]["messages"]
        expected = item_rng(f"item{n}", "chat:turns").randint(2, 5)
        assert len(users(messages)) == expected
        roles = [m["role"] for m in messages]
        assert roles == ["system"] + ["user", "assistant"] * expected
        assert child.values["chat"]["tools"] is None
        assert child.usage[0] > 0 and child.usage[1] > 0
    assert rejects == []
    await assert_settled(client)


async def test_the_user_simulator_ends_early_with_the_stop_word():
    backend = ScriptedBackend(script(user="DONE"))
    stage, _, client = make_stage(backend, {"turns": {"min": 4, "max": 4}})
    [child] = await stage.process(item(), 0)
    assert len(users(child.values["chat"]["messages"])) == 1
    assert [role_of(c.request) for c in backend.calls] == ["assistant", "user"]
    await assert_settled(client)


async def test_native_tool_rounds_in_openai_format():
    backend = ScriptedBackend(script())
    stage, rejects, client = make_stage(backend, {"turns": {"min": 1, "max": 1},
                                                  "tools": {"offer": [WEATHER], "max_rounds": 2,
                                                            "simulator": {"failure_rate": 0}}})
    [child] = await stage.process(item(), 0)
    messages = child.values["chat"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2]["content"] is None and messages[2]["tool_calls"] == call()
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 3}'}
    assert messages[4]["content"] == "It is cold in Oslo today."
    assert child.values["chat"]["tools"] == [WEATHER]
    asked = [c.request for c in backend.calls if role_of(c.request) == "assistant"]
    assert all(r.tools == [WEATHER] for r in asked)
    assert rejects == []
    await assert_settled(client)


async def test_after_the_last_round_the_assistant_must_answer():
    def always_call(request: Request, index: int) -> Step:
        if role_of(request) == "tool":
            return Step(text="{}")
        if request.params.get("tool_choice") == "none":
            return Step(text="Here is what I found.")
        return Step(text="", finish_reason="tool_calls", tool_calls=call(id_=f"c{index}"))
    backend = ScriptedBackend(always_call)
    stage, _, client = make_stage(backend, {"turns": {"min": 1, "max": 1},
                                            "tools": {"offer": [WEATHER], "max_rounds": 2}})
    [child] = await stage.process(item(), 0)
    messages = child.values["chat"]["messages"]
    assert sum(1 for m in messages if m.get("tool_calls")) == 2
    assert messages[-1] == {"role": "assistant", "content": "Here is what I found."}
    await assert_settled(client)


async def test_simulated_failures_follow_the_rate():
    prompts = {}
    for rate in (0.0, 1.0):
        backend = ScriptedBackend(script())
        stage, _, _ = make_stage(backend, {"turns": {"min": 1, "max": 1}, "tools": {
            "offer": [WEATHER], "simulator": {"failure_rate": rate}}})
        for n in range(5):
            await stage.process(item(n), 0)
        prompts[rate] = [c.request.messages[-1]["content"] for c in backend.calls
                         if role_of(c.request) == "tool"]
    assert len(prompts[1.0]) == 5 and all("fails" in p for p in prompts[1.0])
    assert len(prompts[0.0]) == 5 and not any("fails" in p for p in prompts[0.0])


async def test_a_call_of_a_tool_not_offered_is_regenerated_then_rejected():
    backend = ScriptedBackend(script(calls=call(name="launch_rocket")))
    stage, rejects, client = make_stage(
        backend, {"turns": {"min": 1, "max": 1}, "tools": {"offer": [WEATHER]}},
        validators={"max_regenerations": 1})
    assert await stage.process(item(), 0) == []
    assert len(backend.calls) == 2 and backend.calls[-1].request.attempt == 1
    [reject] = rejects
    assert reject["validator"] == "tool_calls" and "launch_rocket" in reject["reason"]
    await assert_settled(client)


async def test_arguments_that_break_the_parameters_are_rejected():
    backend = ScriptedBackend(script(calls=call(arguments='{"town": "Oslo"}')))
    stage, rejects, _ = make_stage(
        backend, {"turns": {"min": 1, "max": 1}, "tools": {"offer": [WEATHER]}},
        validators={"max_regenerations": 0})
    assert await stage.process(item(), 0) == []
    assert rejects[0]["validator"] == "tool_calls" and "city" in rejects[0]["reason"]


async def test_prompted_tools_become_openai_calls():
    backend = ScriptedBackend(script(prompted_call=True))
    stage, rejects, client = make_stage(backend, {"turns": {"min": 1, "max": 1},
                                                  "tools": {"offer": [WEATHER]}}, native=False)
    children = await stage.process(item(), 0)
    assert rejects == []
    messages = children[0].values["chat"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    [made] = messages[2]["tool_calls"]
    assert made["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert messages[3]["tool_call_id"] == made["id"] and messages[4]["content"] == "It is cold."
    asked = [c.request for c in backend.calls if role_of(c.request) == "assistant"]
    assert all(r.tools is None and r.response_format["type"] == "json_schema" for r in asked)
    assert "get_weather" in asked[0].messages[0]["content"]  # described in the system message
    assert asked[1].messages[-1]["role"] == "user"  # the result, as plain chat
    assert asked[1].messages[-1]["content"].startswith("Tool result of get_weather")
    again = ScriptedBackend(script(prompted_call=True))
    stage2, _, _ = make_stage(again, {"turns": {"min": 1, "max": 1},
                                      "tools": {"offer": [WEATHER]}}, native=False)
    [child2] = await stage2.process(item(), 0)
    assert child2.values["chat"] == children[0].values["chat"]  # call ids are made the same way
    await assert_settled(client)


async def test_a_bad_offer_rejects_the_item():
    backend = ScriptedBackend(script())
    stage, rejects, _ = make_stage(backend, {"tools": {"offer": "{{ seed }}"}})
    assert await stage.process(item(), 0) == []
    assert rejects[0]["validator"] == "tools" and "not JSON" in rejects[0]["reason"]
    assert backend.calls == []


def test_a_dialogue_record_is_keyed_by_every_user_turn():
    from gristmill.dataset.dedup import instruction_text
    from gristmill.dataset.records import conversation_record

    def talk(opening: str) -> Item:
        messages = [{"role": "user", "content": opening}, {"role": "assistant", "content": "Ok."},
                    {"role": "user", "content": "thanks!"}, {"role": "assistant", "content": "Bye."}]
        return Item(opening, "s", {"chat": {"messages": messages, "tools": None}})
    make = conversation_record("chat")
    table, taxi = make(talk("Book a table")), make(talk("Find a taxi"))
    assert instruction_text(table) == "Book a table\nthanks!"
    assert instruction_text(table) != instruction_text(taxi)
    assert "tools" not in table and table["messages"][-1]["content"] == "Bye."
