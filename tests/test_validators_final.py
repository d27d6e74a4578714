"""Final validators on good and bad answers, the registry's errors, custom callables, the
defaults and their composition, and the mock's answers against the defaults. (Streaming
validators: test_validators.py.)"""

from __future__ import annotations

import json
import random
import sys
import types

import pytest

from gristmill.backends.mock.answers import build_answer
from gristmill.backends.mock.bad import bad_tokens
from gristmill.errors import ConfigError, InvalidOutput
from gristmill.validation import (DEFAULT_FINAL, DEFAULT_STREAM, CompositeStreamCheck, Context,
                                  Rejection, build, build_all, build_final, build_stream,
                                  merge_specs, run_final, run_stream_on_text, start_checks)
from gristmill.validation import jsonschema_lite
from tests.validator_support import EN, SCHEMA, one

pytestmark = pytest.mark.timeout(60)


# -- final validators -----------------------------------------------------------------------
def test_schema_with_jsonschema_and_the_lite_subset():
    ctx = Context(structured=True, schema=SCHEMA)
    for engine in ("jsonschema", "lite"):
        schema = one({"name": "schema", "engine": engine})
        assert schema.check('{"items": ["a"]}', ctx) is None
        assert "not valid JSON" in schema.check('{"items": [', ctx).reason
        wrong = schema.check('{"items": ["a", ""]}', ctx).reason
        assert "$.items[1]" in wrong and ("short" in wrong or "non-empty" in wrong), wrong
        assert "additional" in schema.check('{"items": ["a"], "x": 1}', ctx).reason.lower()
        assert "required" in schema.check('{}', ctx).reason
        assert schema.check("prose", Context()) is None  # not structured: not checked
    assert jsonschema_lite.first_error(3, {"anyOf": [{"type": "string"}, {"minimum": 5}]})
    assert jsonschema_lite.first_error({"p": {"q": 2}}, {
        "$defs": {"Q": {"type": "object", "properties": {"q": {"type": "string"}}}},
        "properties": {"p": {"$ref": "#/$defs/Q"}}})[0] == "$.p.q"


def test_length_placeholders_and_truncation():
    length = one({"name": "length", "min_words": 3, "max_chars": 50})
    assert length.check("one two three", Context()) is None
    assert "min_words" in length.check("one two", Context()).reason
    assert "max_chars" in length.check("x" * 51, Context()).reason
    ph = one("placeholders")
    for bad in ("Dear [Your Name], thanks", "Sincerely, [Insert company here]",
                "Hello {{ user_name }}!", "As an AI language model, I think", "Lorem ipsum dolor",
                "TODO: finish this", "<placeholder>", "{% if x %}"):
        assert ph.check(bad, Context()).validator == "placeholders", bad
    assert ph.check("A todo: list is fine, and [1] is a citation.", Context()) is None
    assert ph.check("In Jinja write `{{ name }}`.", Context()) is None  # code span
    assert ph.check('{"a": {"b": "c"}}', Context(structured=True)) is None  # JSON braces
    assert ph.check('{"a": "[Insert name]"}', Context(structured=True)) is not None
    tr = one("truncated")
    assert tr.check("  ", Context()).reason == "empty answer"
    cut = tr.check("The wheel turned and", Context(finish_reason="length"))
    assert "finish_reason" in cut.reason
    assert tr.check("fine", Context(finish_reason="stop")) is None
    assert "'answer'" in tr.check("x", Context(record={"instruction": "Q?", "answer": ""})).reason
    pairs = '{"pairs": [{"question": "Q?", "answer": "A."}, {"question": "", "answer": "B"}]}'
    assert "$.pairs[1].question" in tr.check(pairs, Context(structured=True)).reason


def test_restates_question():
    rq = one("restates_question")
    question = ("Explain how a water mill turns the energy of a river into work that grinds "
                "grain, and why millers watched the water level during a dry summer season.")
    ctx = Context(prompt=question)
    assert "is the question" in rq.check(question.upper(), ctx).reason
    assert "restates" in rq.check("A water mill turns the energy of a river into work.", ctx).reason
    assert rq.check("How does a water mill turn river energy into work?", ctx) is None  # 80%
    assert "copying 20 words" in rq.check(question + " " + EN, ctx).reason
    assert rq.check(EN, ctx) is None
    assert rq.check("Grain.", ctx) is None  # short answers: only equality counts
    # the stage says what the output answers; a stage whose output is no answer gives nothing
    assert rq.check(question, Context(record={"instruction": question})) is None


def test_decontamination(tmp_path):
    evals = tmp_path / "eval.jsonl"
    item = ("Natalia sold clips to forty eight of her friends in April and then she sold half "
            "as many clips in May how many clips did she sell")
    evals.write_text(json.dumps({"question": item}) + "\n" + json.dumps({"question": "x"}) + "\n")
    plain = tmp_path / "eval.txt"
    plain.write_text("the quick brown fox jumps over the lazy dog near the river bank today\n")
    dc = build({"name": "decontamination", "paths": [str(evals), str(plain)], "field": "question"})
    assert dc.index.examples == 3 and dc.index.nbytes == 8 * len(dc.index.hashes)
    leaked = "Here is a problem: " + item.upper() + "? Think step by step."
    rejection = dc.check(leaked, Context())
    assert rejection.validator == "decontamination" and "natalia sold clips" in rejection.reason
    assert dc.check("The quick brown fox jumps over the lazy dog near the river bank today!",
                    Context()) is not None
    assert dc.check(EN, Context()) is None
    relative = build_final([{"name": "decontamination", "paths": ["eval.txt"]}], base_dir=tmp_path)
    assert relative[0].index.examples == 1
    with pytest.raises(ConfigError, match="does not exist"):
        build({"name": "decontamination", "paths": [str(tmp_path / "missing.jsonl")]})


# -- registry, custom, composition ----------------------------------------------------------
def test_registry_errors_name_the_validator_and_params():
    with pytest.raises(ConfigError, match="unknown validator 'nope'.*known validators: .*refusal"):
        build("nope")
    with pytest.raises(ConfigError, match="'repetition': ngram.*allowed params: .*max_line_rep"):
        build({"name": "repetition", "ngram": 1})
    with pytest.raises(ConfigError, match="unknown param 'colour'"):
        build({"name": "refusal", "colour": "red"})
    with pytest.raises(ConfigError, match="missing required param 'patterns'"):
        build({"name": "forbidden"})
    with pytest.raises(ConfigError, match="not a valid regex"):
        build({"name": "forbidden", "patterns": ["("]})
    with pytest.raises(ConfigError, match="max_chars and/or max_tokens"):
        build("max_length")
    with pytest.raises(ConfigError, match="'schema' is a final validator"):
        build_stream(["schema"])
    with pytest.raises(ConfigError, match="'refusal' is a streaming validator"):
        build_final(["refusal"])
    with pytest.raises(ConfigError, match="a name or a mapping"):
        build_stream([{"ngram": 3}])


def test_custom_callable(monkeypatch):
    module = types.ModuleType("gm_custom_checks")
    module.no_rivers = lambda text, ctx: "mentions rivers" if "river" in text else None
    module.not_callable = 3
    monkeypatch.setitem(sys.modules, "gm_custom_checks", module)
    check = build({"name": "custom", "callable": "gm_custom_checks:no_rivers"})
    assert check.check(EN, Context()) == Rejection("custom:no_rivers", "mentions rivers")
    assert check.check("lakes", Context()) is None
    for spec, message in (("gm_custom_checks:missing", "no attribute"),
                          ("no_such_module_xyz:f", "cannot import"),
                          ("gm_custom_checks", "package.module:function"),
                          ("gm_custom_checks:not_callable", "not callable")):
        with pytest.raises(ConfigError, match=message):
            build({"name": "custom", "callable": spec})


def test_defaults_merge_and_composition():
    stream, final = build_stream(DEFAULT_STREAM), build_final(DEFAULT_FINAL)
    assert {v.name for v in stream} >= {"refusal", "repetition", "json_prefix", "language"}
    merged = merge_specs(DEFAULT_STREAM, [{"name": "language", "enabled": False},
                                          {"name": "repetition", "ngram": 6},
                                          {"name": "forbidden", "patterns": ["x"]}])
    names = [s if isinstance(s, str) else s["name"] for s in merged]
    assert "language" not in names and names[-1] == "forbidden"
    assert build_stream(merged)[names.index("repetition")].params.ngram == 6
    s2, f2 = build_all(["refusal", "schema", {"name": "length", "min_chars": 1}])
    assert [v.name for v in s2] == ["refusal"] and [v.name for v in f2] == ["schema", "length"]
    check = start_checks(stream, Context())
    assert isinstance(check, CompositeStreamCheck)
    first = check.feed("I'm sorry, but I can't help with that. " + EN)
    assert first.validator == "refusal" and check.feed("more") is first and check.finish() is first
    error = first.error("text")
    assert isinstance(error, InvalidOutput) and error.validator == "refusal"
    assert run_stream_on_text(stream, EN, Context()) is None
    assert run_final(final, EN, Context(prompt="Tell me about mills.")) is None


def test_mock_answers_pass_the_defaults_and_bad_ones_are_caught_early():
    stream, final = build_stream(DEFAULT_STREAM), build_final(DEFAULT_FINAL)
    fmt = {"type": "json_schema", "json_schema": {"name": "items", "schema": SCHEMA}}
    for i in range(150):
        body = {"model": "m", "messages": [{"role": "user", "content": f"Question {i}?"}]}
        if i % 3 == 0:
            body["response_format"] = fmt
        choice = build_answer(body, True, (40, 1000)).choices[0]
        ctx = Context(structured=i % 3 == 0, schema=SCHEMA, prompt=f"Question {i}?",
                      finish_reason=choice.finish_reason)
        assert run_stream_on_text(stream, choice.text, ctx) is None
        assert run_final(final, choice.text, ctx) is None
    expected = {"refusal": "refusal", "loop": "repetition", "json": "json_prefix",
                "language": "language"}
    for kind, validator in expected.items():
        for seed in range(20):
            tokens = bad_tokens(kind, random.Random(seed), 1000, SCHEMA)
            check = start_checks(stream, Context(structured=kind == "json", schema=SCHEMA))
            fed = next(n for n, tok in enumerate(tokens, 1) if check.feed(tok) is not None)
            assert check.rejection.validator == validator and fed < 120, (kind, seed, fed)
