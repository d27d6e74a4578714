"""Planted failure modes (`--plant`): each kind passes the default validators, the choice is a
deterministic function of the last user message (so the truth is recoverable from a record),
/stats counts them, and the mock judge fails a contradiction through the record's input."""

from __future__ import annotations

import json

import aiohttp
import pytest

from gristmill.backends.mock.answers import build_answer
from gristmill.backends.mock.judge import answer_for
from gristmill.backends.mock.planted import (GOOD, HEDGE, OFF_TOPIC, PLANT_KINDS, contradiction,
                                             plant, planted_kind)
from gristmill.backends.mock.process import MockServerProcess as MockServer
from gristmill.config.judge import CriterionConfig
from gristmill.flywheel.prompt import render_prompt, verdict_format
from gristmill.validation import (DEFAULT_FINAL, DEFAULT_STREAM, Context, build_final,
                                  build_stream, run_final, run_stream_on_text)

pytestmark = pytest.mark.timeout(30)

SCHEMA = {"type": "object", "required": ["title"],
          "properties": {"title": {"type": "string"}, "notes": {"type": "string"},
                         "year": {"type": "integer"}}}
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "doc", "schema": SCHEMA}}
PASSAGE = "The river depth is 40 metres at the old mill, and the bridge is 120 years old."


def body(i: int, structured: bool = False) -> dict:
    content = f"Passage {i}: {PASSAGE}\n\nSummarise the passage."
    out = {"model": "mock", "messages": [{"role": "user", "content": content}],
           "max_tokens": 400}
    return {**out, "response_format": JSON_FORMAT} if structured else out


def test_each_kind_passes_the_default_validators_and_looks_as_documented():
    stream, final = build_stream(DEFAULT_STREAM), build_final(DEFAULT_FINAL)
    for kind in PLANT_KINDS:
        structured = kind == "missing_field"
        for i in range(5):
            b = body(i, structured)
            good = build_answer(b, True, (40, 200))
            text = plant(good, b, kind).choices[0].text
            assert text != good.choices[0].text
            ctx = Context(structured=structured, schema=SCHEMA if structured else None,
                          prompt=b["messages"][0]["content"], finish_reason="stop")
            assert run_stream_on_text(stream, text, ctx) is None, (kind, text)
            assert run_final(final, text, ctx) is None, (kind, text)
            if kind == "hedge":
                assert text.startswith(HEDGE + " ")
            elif kind == "short":
                assert len(text.split()) <= 6 < len(good.choices[0].text.split())
            elif kind == "missing_field":
                assert len(json.loads(text)) < len(SCHEMA["properties"])
            elif kind == "off_topic":
                assert any(line in text for line in OFF_TOPIC)
            else:
                assert contradiction(b["messages"][0]["content"], text)[:2] == ("river depth", 40)


def test_the_choice_is_deterministic_per_message_at_the_rate_and_fits_the_request():
    bodies = [body(i) for i in range(2000)]
    kinds = [planted_kind(b, 0.3) for b in bodies]
    assert kinds == [planted_kind(dict(reversed(b.items())), 0.3) for b in bodies]
    failures = [k for k in kinds if k not in (None, GOOD)]
    assert 0.26 < len(failures) / len(kinds) < 0.34
    assert set(failures) == {"hedge", "short", "off_topic", "contradiction"}
    # the good twin: half the unplanted answers to a message with a fact restate it rightly
    assert 0.3 < kinds.count(GOOD) / kinds.count(None) < 0.7 * 2
    structured = {planted_kind(body(i, True), 0.3) for i in range(200)}
    assert structured == {None, "missing_field"}
    no_fact = [{"model": "m", "messages": [{"role": "user", "content": f"Hello {i}"}]}
               for i in range(100)]
    assert {planted_kind(b, 1.0) for b in no_fact} == {"hedge", "short", "off_topic"}
    assert planted_kind(body(1), 0.0) is None
    assert {planted_kind(body(i), 1.0, ("hedge",)) for i in range(50)} == {"hedge"}


CRITERIA = [CriterionConfig(name="concise", question="Is the answer concise?"),
            CriterionConfig(name="grounded", question="Is every claim supported by the passage?")]


def judge_body(instruction: str, answer: str) -> dict:
    text = render_prompt(CRITERIA, [], "qa", instruction, answer)
    return {"model": "mock", "messages": [{"role": "user", "content": text}],
            "response_format": verdict_format(CRITERIA)}


def test_the_mock_judge_fails_a_contradiction_of_the_input():
    failed = 0
    for i in range(20):
        b = body(i)
        text = plant(build_answer(b, True, (40, 200)), b, "contradiction").choices[0].text
        verdict, judged = answer_for(judge_body(b["messages"][0]["content"], text), True, (40, 200))
        criteria = json.loads(verdict.choices[0].text)["criteria"]
        assert judged and criteria["grounded"]["passed"] is False
        assert "input says it is 40" in criteria["grounded"]["critique"]
        failed += 1
        # the good twin restates the fact rightly, and is not failed for it
        agreeing = plant(build_answer(b, True, (40, 200)), b, GOOD).choices[0].text
        assert agreeing.startswith("The river depth is 40.")
        ok, _ = answer_for(judge_body(b["messages"][0]["content"], agreeing), True, (40, 200))
        assert "input says" not in ok.choices[0].text
    assert failed == 20


async def test_the_server_plants_and_counts_them_in_stats():
    with MockServer("--plant-rate", "0.5", "--plant", "hedge,short") as s:
        async with aiohttp.ClientSession() as session:
            seen = []
            for i in range(40):
                async with session.post(s.url + "/v1/chat/completions", json=body(i)) as r:
                    text = (await r.json())["choices"][0]["message"]["content"]
                kind = planted_kind(body(i), 0.5, ("hedge", "short"))
                assert text.startswith(HEDGE) == (kind == "hedge")
                seen.append(kind)
        stats = s.stats()["planted"]
        assert stats == {k: seen.count(k) for k in ("hedge", "short") if k in seen}
        assert sum(stats.values()) >= 10
