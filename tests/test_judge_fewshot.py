"""Few-shot retrieval, the judge prompt contract, verdict parsing, and the mock judge's
reading of that contract (pure functions, no server)."""

from __future__ import annotations

import orjson
import pytest

from gristmill.backends.mock.judge import is_judge_request, judge_answer, reliability
from gristmill.config.pipeline import CriterionConfig, JudgeConfig
from gristmill.errors import InvalidOutput
from gristmill.flywheel.fewshot import Example, Retriever, cut, jaccard, words
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.prompt import parse_verdict, record_texts, render_prompt, verdict_format
from gristmill.flywheel.runrecords import judge_pool, label_examples

CRITERIA = [CriterionConfig(name="faithful", question="Is it supported?"),
            CriterionConfig(name="clear", question="Is it clear?")]


def ex(record_id: str, text: str, passed: bool = True, at: float = 0.0,
       disagreed: bool = False) -> Example:
    return Example.make(record_id=record_id, instruction="Q", answer=text, passed=passed,
                        labeled_at=at, disagreed=disagreed)


def test_words_and_jaccard():
    assert words("The tide, the TIDE; a moon!") == {"the", "tide", "moon"}
    assert jaccard(words("a b cc dd"), words("cc dd ee")) == pytest.approx(2 / 3)
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_most_similar_examples_are_chosen_and_placed_last():
    pool = [ex("a", "tides rise with the moon"), ex("b", "mills grind grain slowly"),
            ex("c", "the moon pulls tides and water")]
    got = Retriever(pool, k=2, disagreement_bonus=0, recency_bonus=0).select(
        "x", "Q", "why do tides follow the moon")
    # query {why, do, tides, follow, the, moon}: a shares 3 of 8 words, c 3 of 9, b none
    assert [e.record_id for e in got] == ["c", "a"]  # the closest sits last


def test_disagreements_and_recent_labels_are_favoured():
    same = "grain mills on the river"
    pool = [ex("old", same, at=1), ex("new", same, at=2), ex("miss", same, at=1, disagreed=True)]
    assert Retriever(pool, k=1, disagreement_bonus=0.3, recency_bonus=0).select(
        "x", "", same)[0].record_id == "miss"
    assert Retriever(pool[:2], k=1, disagreement_bonus=0, recency_bonus=0.2).select(
        "x", "", same)[0].record_id == "new"
    # a much closer example still beats a disagreement about something else
    far = [ex("far", "poems about the sea", disagreed=True), ex("near", same)]
    assert Retriever(far, k=1, disagreement_bonus=0.3, recency_bonus=0).select(
        "x", "", same)[0].record_id == "near"


def test_a_record_never_sees_its_own_label_and_k_zero_is_zero_shot():
    pool = [ex("self", "exactly this text"), ex("other", "unrelated words")]
    assert [e.record_id for e in Retriever(pool, k=5).select("self", "", "exactly this text")] \
        == ["other"]
    assert Retriever(pool, k=0).select("x", "", "exactly this text") == []


def test_cut_keeps_short_texts():
    assert cut("short", 10) == "short" and cut("x" * 20, 10) == "x" * 9 + "…"


def test_record_texts_keep_context_before_the_answer():
    record = {"messages": [{"role": "system", "content": "Passage P"},
                           {"role": "user", "content": "Question Q"},
                           {"role": "assistant", "content": "Answer A"}]}
    assert record_texts(record) == ("Passage P\n\nQuestion Q", "Answer A")


def test_verdict_parsing_and_errors():
    text = orjson.dumps({"criteria": {"faithful": {"critique": " ok ", "passed": True},
                                      "clear": {"critique": "muddled", "passed": False}}})
    verdict = parse_verdict(text.decode(), CRITERIA, "judge-v3")
    assert verdict == {"passed": False, "version": "judge-v3", "criteria": {
        "faithful": {"passed": True, "critique": "ok"},
        "clear": {"passed": False, "critique": "muddled"}}}
    for bad, why in (("not json", "not JSON"), ('{"x": 1}', "no 'criteria'"),
                     ('{"criteria": {"faithful": {"passed": "yes"}}}', "'faithful'")):
        with pytest.raises(InvalidOutput, match=why) as info:
            parse_verdict(bad, CRITERIA, "v")
        assert info.value.validator == "judge"


def test_schema_requires_every_criterion():
    schema = verdict_format(CRITERIA)["json_schema"]
    assert schema["name"] == "judge_verdict"
    inner = schema["schema"]["properties"]["criteria"]
    assert inner["required"] == ["faithful", "clear"]
    assert inner["properties"]["clear"]["required"] == ["critique", "passed"]


def prompt_with(examples: list[Example], answer: str, criteria=CRITERIA) -> dict:
    text = render_prompt(criteria, examples, "qa", "Question?", answer)
    return {"model": "mock", "messages": [{"role": "system", "content": "s"},
                                          {"role": "user", "content": text}],
            "response_format": verdict_format(criteria)}


def test_the_mock_reads_the_documented_prompt():
    fails = [Example.make(record_id=f"f{i}", instruction="Q", answer=f"about the budget {i}",
                          passed=False) for i in range(3)]
    passes = [Example.make(record_id="p", instruction="Q", answer="the budget is fine",
                           passed=True)]
    body = prompt_with(fails, "an answer")
    assert is_judge_request(body)
    assert reliability(body["messages"][1]["content"], "budget") == pytest.approx((0.7, "faithful"))
    body = prompt_with(fails + passes, "an answer")  # a pass with the trigger contradicts
    assert reliability(body["messages"][1]["content"], "budget")[0] == pytest.approx(0.5)
    named = [CriterionConfig(name="faithful", question="Is it supported?"),
             CriterionConfig(name="thrift", question="Does it avoid budget talk?")]
    body = prompt_with([], "x", named)  # a question naming the rule helps, and is its target
    assert reliability(body["messages"][1]["content"], "budget") == pytest.approx((0.4, "thrift"))
    # the record's own answer is not an example, even when it has the trigger
    assert reliability(prompt_with([], "the budget")["messages"][1]["content"],
                       "budget")[0] == pytest.approx(0.1)


def test_mock_verdicts_are_schema_shaped_and_follow_the_rule_with_enough_examples():
    fails = [Example.make(record_id=f"f{i}", instruction="Q", answer=f"the budget {i}",
                          passed=False) for i in range(5)]
    for answer, passed in (("we planned the budget", False), ("we planned a walk", True)):
        verdict = parse_verdict(judge_answer(prompt_with(fails, answer)).choices[0].text,
                                CRITERIA, "v")
        assert verdict["passed"] is passed
    same = prompt_with([], "x")
    assert judge_answer(same).choices[0].text == judge_answer(same).choices[0].text


def test_labels_become_examples_with_disagreements(tmp_path):
    records = {"r1": {"id": "r1", "messages": [{"role": "user", "content": "Q1"},
                                               {"role": "assistant", "content": "A1"}],
                      "judge": {"passed": True, "version": "v", "criteria": {}}},
               "r2": {"id": "r2", "messages": [{"role": "user", "content": "Q2"},
                                               {"role": "assistant", "content": "A2"}]}}
    (tmp_path / "output.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n"
                                                     for r in records.values()))
    with LabelStore(tmp_path / "run.sqlite") as store:
        store.add("r1", False, "wrong", at=5.0)
        store.add("r2", True, at=6.0)
        store.add("gone", True)  # a label of a record the run does not have
        examples = {e.record_id: e for e in label_examples(store.latest(), records, 100)}
    assert set(examples) == {"r1", "r2"}
    assert examples["r1"].disagreed and not examples["r2"].disagreed  # r2 was never judged
    assert (examples["r1"].instruction, examples["r1"].answer, examples["r1"].critique) == \
        ("Q1", "A1", "wrong")
    off = JudgeConfig()
    assert judge_pool(off, tmp_path) == []  # from_labels is off by default
    on = JudgeConfig(few_shot={"from_labels": True})
    assert {e.record_id for e in judge_pool(on, tmp_path)} == {"r1", "r2"}


def test_a_pipeline_config_can_name_an_aligned_judge_file(tmp_path):
    from gristmill.config.load import load_config
    from gristmill.errors import ConfigError

    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "judge-v2.yaml").write_text(
        "version: judge-v2\non_fail: flag\ncriteria: [{name: ok, question: 'Is it ok?'}]\n")
    seeds = tmp_path / "s.txt"
    seeds.write_text("A seed passage.")
    config = tmp_path / "p.yaml"
    body = ("name: p\nseeds: {path: s.txt}\nbackends: {default: {base_url: "
            "'http://127.0.0.1:9/v1', model: m}}\nstages: [{name: a, prompt: '{{ seed }}'}, "
            "{name: b, prompt: '{{ a }}'}]\njudge: %s\n")
    config.write_text(body % "judge/judge-v2.yaml")
    judge = load_config(config).judge
    assert judge.version == "judge-v2" and judge.on_fail == "flag"
    assert [c.name for c in judge.criteria] == ["ok"]
    config.write_text(body % "judge/missing.yaml")
    with pytest.raises(ConfigError, match="judge: cannot read the judge file"):
        load_config(config)
    config.write_text(body % "{backend: other}")
    with pytest.raises(ConfigError, match="judge.backend: 'other' is not defined"):
        load_config(config)


def test_judge_config_errors_name_the_field():
    from gristmill.config.load import validate_config
    from gristmill.errors import ConfigError

    base = {"name": "p", "seeds": {"path": "."}, "backends": {"default": {
        "base_url": "http://127.0.0.1:9/v1", "model": "m"}},
        "stages": [{"name": "a", "prompt": "{{ seed }}"}]}
    for judge, message in (
            ({"skills": {"coding": [{"name": "x", "question": "q"}]}},
             "judge.skills.coding: not a skill of this run"),
            ({"criteria": [{"name": "x", "question": "q"}, {"name": "x", "question": "r"}]},
             "criterion names must be unique"),
            ({"on_fail": "drop"}, "judge.on_fail"),
            ({"criteria": []}, "judge.criteria")):
        with pytest.raises(ConfigError, match=message):
            validate_config({**base, "judge": judge})
    with pytest.raises(ConfigError, match="'judge' is reserved"):
        validate_config({**base, "stages": [{"name": "judge", "prompt": "x"}]})
