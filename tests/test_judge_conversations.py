"""The judge sees a whole conversation: the transcript rendering of dialogues and tool calls,
the single-turn prompt unchanged to the byte (its requests are cached by their text), and the
mock judge, as a real server, judging what the assistant did after the last user turn."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from gristmill.backends.mock.judge import is_judge_request, judge_answer
from gristmill.config.pipeline import CriterionConfig, JudgeConfig
from gristmill.flywheel.fewshot import Example
from gristmill.flywheel.prompt import (CONVERSATION_NOTE, parse_verdict, record_texts,
                                       render_prompt, verdict_format)
from gristmill.flywheel.session import JudgeSession

from .conftest import pipeline_config
from .conversation_records import HTML, call, dialogue, plain, tool_use

CRITERIA = [CriterionConfig(name="faithful", question="Is it supported?")]

SINGLE_TURN_PROMPT = """\
Judge the answer to the instruction in <record> against each criterion in <criteria>. \
For each criterion write a one-paragraph critique, then decide: passed is true only if the \
answer clearly meets the criterion. The examples are records the reviewers have already \
judged; judge alike.

<criteria>
<criterion name="faithful">Is it supported?</criterion>
</criteria>

<examples>
<example verdict="fail" criterion="">
<instruction>
Q
</instruction>
<answer>
A
</answer>
<critique>too short</critique>
</example>
</examples>

<record skill="qa">
<instruction>
Passage P

Question Q
</instruction>
<answer>
Answer A
</answer>
</record>"""


def test_a_single_turn_prompt_is_unchanged_to_the_byte():
    record = {"skill": "qa", "tools": [],
              "messages": [{"role": "system", "content": "Passage P"},
                           {"role": "user", "content": "Question Q"},
                           {"role": "assistant", "content": "Answer A"}]}
    instruction, answer = record_texts(record)
    example = Example.make(record_id="e", instruction="Q", answer="A", passed=False,
                           critique="too short")
    assert render_prompt(CRITERIA, [example], "qa", instruction, answer) == SINGLE_TURN_PROMPT


def test_a_dialogue_is_rendered_whole_up_to_its_last_user_turn():
    instruction, answer = record_texts(dialogue())
    assert instruction == (
        "[system]\nYou are a concise travel assistant.\n\n"
        "[user]\nWhich river runs through Lyon?\n\n"
        "[assistant]\nTwo: the Rhône and the Saône.\n\n"
        "[user]\nWhich one is longer?\n\n"
        f"[assistant]\nThe Rhône. {HTML}\n\n"
        "[user]\nThanks, and where do they meet?")
    assert answer == "At the Confluence, south of the Presqu'île."


def test_tool_calls_results_and_tools_are_in_the_transcript():
    instruction, answer = record_texts(tool_use())
    assert instruction == (
        "[tools]\n"
        "find_restaurant: Find a restaurant with a free table. Parameters: "
        '{"type":"object","properties":{"party":{"type":"integer"},"cuisine":{"type":"string"}},'
        '"required":["party"]}\n'
        "book_taxi: Book a taxi to an address. Parameters: "
        '{"type":"object","properties":{"to":{"type":"string"},"at":{"type":"string",'
        '"format":"date-time"}},"required":["to"]}\n\n'
        "[system]\nYou book things for the user.\n\n"
        "[user]\nBook me a table for 2 tonight\n\n"
        '[assistant calls find_restaurant, id call_1]\n{"party":2}\n\n'
        '[result of find_restaurant, id call_1]\n{"name": "Luigi\'s"}\n\n'
        "[assistant]\nI found Luigi's, a table for 2 at 8pm.\n\n"
        "[user]\nGreat, and a taxi there and back?")
    assert answer == (
        '[assistant calls book_taxi, id call_2]\n{"to":"Luigi\'s","at":"2030-01-01T19:40"}\n\n'
        '[assistant calls book_taxi, id call_3]\n{"to":"home","at":"2030-01-01T22:30"}\n\n'
        '[result of book_taxi, id call_2]\n{"taxi": "T-17"}\n\n'
        '[result of book_taxi, id call_3]\n{"taxi": "T-42"}\n\n'
        "[assistant]\nTaxis T-17 (7:40pm) and T-42 (10:30pm) are booked.")


def test_a_conversation_prompt_explains_the_transcript_and_the_mock_reads_it():
    instruction, answer = record_texts(tool_use())
    text = render_prompt(CRITERIA, [], "tool_use", instruction, answer, conversation=True)
    assert text.startswith(render_prompt(CRITERIA, [], "", "", "").split("\n")[0]
                           + CONVERSATION_NOTE)
    assert text.endswith(f"<answer>\n{answer}\n</answer>\n</record>")
    body = {"model": "mock", "messages": [{"role": "system", "content": "s"},
                                          {"role": "user", "content": text}],
            "response_format": verdict_format(CRITERIA)}
    assert is_judge_request(body)
    assert parse_verdict(judge_answer(body).choices[0].text, CRITERIA, "v")["criteria"]


def budget_examples() -> list[Example]:
    """Enough failed examples about the budget that the mock judge follows its hidden rule."""
    return [Example.make(record_id=f"ex{i}", instruction="Plan the trip",
                         answer=f"We must watch the budget {i}", passed=False) for i in range(5)]


async def test_the_judge_server_sees_tool_calls_after_the_last_user_turn(mock_server,
                                                                         tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = pipeline_config(mock_server.base_url, tmp_path)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    in_call = tool_use("in-call")  # the trigger only in a tool call's arguments
    in_call["messages"][6]["tool_calls"][1] = call("call_3", "book_taxi", to="budget hotel")
    in_result = tool_use("in-result")  # only in a tool result
    in_result["messages"][8]["content"] = json.dumps({"taxi": "T-42", "fare": "budget"})
    earlier = tool_use("earlier")  # only before the last user turn: context, not the answer
    earlier["messages"][4]["content"] = "Luigi's fits your budget."
    final = dialogue("final")
    final["messages"][-1]["content"] = "At the Confluence; mind the budget."
    records = [in_call, in_result, earlier, final, tool_use("clean"), dialogue("clean-dialogue"),
               plain("plain")]
    judge = JudgeConfig(criteria=CRITERIA, few_shot={"k": 5})
    async with JudgeSession(run_dir) as session:
        judged = await session.judge(judge, records, budget_examples())
    assert not judged.failures
    assert {i: v["passed"] for i, v in judged.verdicts.items()} == {
        "in-call": False, "in-result": False, "earlier": True, "final": False, "clean": True,
        "clean-dialogue": True, "plain": True}
