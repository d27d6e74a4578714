"""Tool calls on the wire: the mock answers a request that offers tools with a call, streamed
and not; the backend reads the call (an arguments object, fragments in pieces), the cache
keeps it, and a broken call is a malformed answer, not a crash."""

from __future__ import annotations

import orjson
import pytest

from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.backends.openai_http.wire import first_answer, read_chunk
from gristmill.config.pipeline import BackendConfig
from gristmill.dataset.cache import decode, encode
from gristmill.errors import MalformedAnswer
from gristmill.protocol import Completion, Request, Usage, request_key
from gristmill.tool_calls import ToolCallParts

pytestmark = pytest.mark.integration

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city", "unit"]}}}
ASK = [{"role": "user", "content": "Weather in Oslo?"}]


def backend(url: str) -> OpenAIHTTPBackend:
    return OpenAIHTTPBackend("t", BackendConfig(base_urls=[url], model="mock"))


async def streamed(b: OpenAIHTTPBackend, request: Request) -> Completion:
    parts, calls, finish = [], ToolCallParts(), None
    async for delta in b.stream(request):
        parts.append(delta.text)
        if delta.tool_calls:
            calls.add(delta.tool_calls)
        finish = delta.finish_reason or finish
    return Completion("".join(parts), finish, Usage(), tool_calls=calls.calls())


async def test_a_request_with_tools_gets_a_call_streamed_and_not(mock_server):
    b = backend(mock_server.base_url)
    try:
        whole = await b.complete(Request("mock", messages=ASK, tools=[WEATHER]))
        pieces = await streamed(b, Request("mock", messages=ASK, tools=[WEATHER]))
    finally:
        await b.aclose()
    assert whole.finish_reason == "tool_calls" and whole.text == ""
    [call] = whole.tool_calls
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    arguments = orjson.loads(call["function"]["arguments"])
    assert set(arguments) == {"city", "unit"} and arguments["unit"] in ("C", "F")
    assert pieces.tool_calls == whole.tool_calls  # the fragments join to the same call
    assert pieces.finish_reason == "tool_calls"


async def test_after_the_tool_result_the_answer_is_text(mock_server):
    b = backend(mock_server.base_url)
    try:
        first = await b.complete(Request("mock", messages=ASK, tools=[WEATHER]))
        [call] = first.tool_calls
        conversation = ASK + [{"role": "assistant", "content": None, "tool_calls": [call]},
                              {"role": "tool", "tool_call_id": call["id"],
                               "content": '{"temp": 3}'}]
        final = await b.complete(Request("mock", messages=conversation, tools=[WEATHER]))
        refused = await b.complete(Request("mock", messages=ASK, tools=[WEATHER],
                                           params={"tool_choice": "none"}))
    finally:
        await b.aclose()
    assert final.tool_calls is None and final.text and final.finish_reason == "stop"
    assert refused.tool_calls is None and refused.text


def test_a_body_with_arguments_as_an_object_is_normalised():
    body = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "f", "arguments": {"x": 1}}}]}, "finish_reason": "tool_calls"}]}
    text, finish, calls = first_answer(body, chat=True)
    assert (text, finish) == ("", "tool_calls")
    assert calls == [{"id": "c1", "type": "function", "function": {"name": "f",
                                                                   "arguments": '{"x":1}'}}]


@pytest.mark.parametrize("calls", [
    "not a list", [{"id": "c1", "function": {}}], [{"function": {"name": "f"}}],
    [{"id": "c1", "function": {"name": "f", "arguments": 3}}]])
def test_a_broken_call_in_a_body_is_a_malformed_answer(calls):
    body = {"choices": [{"message": {"role": "assistant", "content": None,
                                     "tool_calls": calls}}]}
    with pytest.raises(MalformedAnswer):
        first_answer(body, chat=True)


def test_a_broken_streamed_fragment_is_a_malformed_answer():
    event = {"choices": [{"delta": {"tool_calls": [{"index": "x"}]}, "finish_reason": None}]}
    with pytest.raises(MalformedAnswer):
        read_chunk(event, True, [], [])
    parts = ToolCallParts()
    parts.add([{"index": 0, "id": None, "name": None, "arguments": "{}"}])
    with pytest.raises(ValueError, match="no function name"):
        parts.calls()


def test_the_cache_keeps_calls_and_old_answers_still_decode():
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    kept = decode(encode(Completion("", "tool_calls", Usage(3, 4), "m", tool_calls=calls)))
    assert kept.tool_calls == calls and kept.cached
    plain = encode(Completion("hi", "stop", Usage(1, 2), "m"))
    assert len(orjson.loads(plain)) == 6  # answers without calls are stored as before
    assert decode(orjson.dumps(["hi", "stop", 1, 2, "m"])).tool_calls is None


def test_tools_change_the_key_and_their_absence_does_not_move_old_keys():
    plain = Request("m", messages=ASK)
    with_tools = Request("m", messages=ASK, tools=[WEATHER])
    assert request_key("b", plain) != request_key("b", with_tools)
    assert request_key("b", plain).hex() == request_key("b", Request("m", messages=ASK)).hex()
