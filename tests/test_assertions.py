"""Assertions without a server: each kind of the vocabulary, the miner on planted signals,
subsumption, the exact selection (against greedy), and the file round trip."""

from __future__ import annotations

import random
from itertools import combinations

import pytest
from pydantic import ValidationError

from gristmill.assertions.evaluate import Evaluation, evaluate, evaluate_all
from gristmill.assertions.files import read_assertions, write_assertions
from gristmill.assertions.miner import Labelled, mine
from gristmill.assertions.select import drop_subsumed, select
from gristmill.assertions.vocabulary import (Items, JsonPath, Language, Length, LlmCriterion,
                                             Overlap, Regex, Terms, Texts, parse_assertion,
                                             record_texts)
from gristmill.errors import ConfigError


def record(instruction: str, answer: str) -> dict:
    return {"id": "r", "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": instruction},
                                    {"role": "assistant", "content": answer}]}


ENGLISH = ("The mill stood by the river and the wheel turned all day, so the miller could "
           "grind the grain that the farmers of the valley brought to him in the autumn.")
GERMAN = ("Die Mühle stand am Fluss und das Rad drehte sich den ganzen Tag, damit der Müller "
          "das Korn mahlen konnte, das die Bauern des Tales im Herbst zu ihm brachten.")


def test_record_texts_split_at_the_last_user_turn_with_tool_calls_in_the_answer():
    talk = {"messages": [
        {"role": "user", "content": "Book a table"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "book", "arguments": '{"party": 2}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "booked"},
        {"role": "assistant", "content": "Done."}]}
    texts = record_texts(talk)
    assert texts.instruction == "Book a table"
    assert texts.answer == '{"party": 2}\n\nbooked\n\nDone.'
    assert record_texts(record("Q?", "A.")) == Texts("Be brief.\n\nQ?", "A.")


def test_regex_must_not_match_and_must_match_on_either_side():
    r = record("Write about the budget", "We spent the Budget wisely.")
    assert not Regex(pattern=r"\bbudget\b").check(r)
    assert Regex(pattern=r"\bbudget\b", ignore_case=False).check(r)
    assert Regex(pattern="wisely", must_match=True).check(r)
    assert not Regex(pattern="poorly", must_match=True).check(r)
    assert not Regex(pattern="write about", target="instruction").check(r)
    with pytest.raises(ValidationError, match="not a valid regex"):
        Regex(pattern="(unclosed")


def test_length_bounds_in_chars_and_words():
    r = record("Q", "  one two three four  ")
    assert Length(unit="chars", max=18).check(r) and not Length(unit="chars", max=17).check(r)
    assert Length(unit="words", min=4, max=4).check(r)
    assert not Length(unit="words", min=5).check(r)
    with pytest.raises(ValidationError, match="min, max or both"):
        Length(unit="words")
    with pytest.raises(ValidationError, match="above max"):
        Length(min=5, max=2)


def test_json_path_present_with_a_type_or_absent():
    r = record("Q", '```json\n{"steps": [{"name": "grind", "minutes": 5}], "note": null}\n```')
    assert JsonPath(path="steps.0.name", type="string").check(r)
    assert JsonPath(path="steps.0.minutes", type="number").check(r)
    assert JsonPath(path="steps.0.minutes", type="integer").check(r)
    assert not JsonPath(path="steps.0.minutes", type="string").check(r)
    assert JsonPath(path="note", type="null").check(r)
    assert not JsonPath(path="steps.1").check(r)
    assert JsonPath(path="steps.1", present=False).check(r)
    assert not JsonPath(path="steps").check(record("Q", "not json at all"))
    assert JsonPath(path="steps", present=False).check(record("Q", "not json at all"))


def test_language_by_script_and_english_stop_words():
    assert Language().check(record("Q", ENGLISH))
    assert not Language().check(record("Q", GERMAN))
    assert not Language(language="ru").check(record("Q", ENGLISH))
    assert Language(language="de").check(record("Q", GERMAN))
    assert Language().check(record("Q", "Short."))  # too few words to judge


def test_overlap_with_the_instruction():
    r = record("rivers mills wheels", "rivers mills stones")  # 2 of 3 answer words
    assert Overlap(min=0.6).check(r) and not Overlap(min=0.7).check(r)
    assert Overlap(max=0.7).check(r) and not Overlap(max=0.6).check(r)
    with pytest.raises(ValidationError):
        Overlap(max=1.5)


def test_required_and_forbidden_terms_are_whole_words():
    r = record("Q", "The mill budgets its flour.\nWater Wheel ok")
    assert Terms(terms=["water   wheel", "flour"], mode="required").check(r)
    assert not Terms(terms=["water wheel", "grain"], mode="required").check(r)
    assert Terms(terms=["budget"]).check(r)  # 'budgets' is another word
    assert not Terms(terms=["mill"]).check(r)


def test_items_count_json_lists_and_bullet_lines():
    bullets = record("Q", "Steps:\n- grind\n* sift\n3. bake\nno item here")
    assert Items(min=3, max=3).check(bullets) and not Items(min=4).check(bullets)
    assert Items(max=2).check(record("Q", '["a", "b"]'))
    assert not Items(min=1).check(record("Q", "plain prose"))


def test_ids_are_stable_and_differ_by_parameters():
    assert Regex(pattern="x").id == Regex(pattern="x").id == "regex-" + Regex(pattern="x").id[6:]
    assert Regex(pattern="x").id != Regex(pattern="x", must_match=True).id
    assert Length(max=5).id != Length(max=5, unit="words").id
    criterion = LlmCriterion(name="polite", question="Is the answer polite?")
    assert not criterion.deterministic and criterion.id.startswith("llm-")
    with pytest.raises(TypeError, match="LLM judge"):
        criterion.check(record("Q", "A"))
    with pytest.raises(ValidationError):
        parse_assertion({"kind": "regex", "pattern": "x", "code": "import os"})
    with pytest.raises(ValidationError):
        parse_assertion({"kind": "python", "source": "print(1)"})


# -- the miner ---------------------------------------------------------------------------
VOCAB = "river mill water wheel grain stone flour miller valley farmer sack cart".split()


def synthetic(n: int, fails_if, make_answer, seed: int = 0) -> list[Labelled]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        answer = make_answer(rng, i)
        out.append(Labelled(f"r{i:03d}", Texts("Tell me about the mill", answer),
                            not fails_if(i)))
    return out


def prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words)) + "."


def kept(labelled, **kwargs):
    return [e.assertion for e in select(evaluate_all(mine(labelled), labelled), **kwargs).kept]


def test_the_miner_finds_a_planted_phrase():
    labelled = synthetic(
        60, lambda i: i % 4 == 0,
        lambda rng, i: prose(rng, rng.randint(15, 30))
        + (" Overall the budget was exceeded." if i % 4 == 0 else ""))
    candidates = mine(labelled)
    assert Regex(pattern=r"\bbudget\b") in candidates
    chosen = kept(labelled)
    assert chosen == [Regex(pattern=r"\bbudget\b")]  # the shortest phrase catching all fails
    assert evaluate(chosen[0], labelled).coverage == 1.0
    assert evaluate(chosen[0], labelled).ffr == 0.0


def test_one_failure_mode_with_many_words_leaves_room_for_another():
    bread = " Bakers fold dough with flour, water, salt and yeast before the oven bakes crusty loaves."
    labelled = synthetic(
        90, lambda i: i % 3 == 0,
        lambda rng, i: (("It may be worth noting that " if i % 9 == 0 else "")
                        + prose(rng, rng.randint(15, 30)) + (bread if i % 9 in (3, 6) else "")))
    regexes = {c.pattern for c in mine(labelled) if isinstance(c, Regex)}
    # the bread mode alone has more than MAX_PHRASES strong words; the hedge still gets one
    assert any(p.startswith(r"\bmay") or p.startswith(r"\bworth") or "noting" in p
               for p in regexes), regexes
    assert any(bool(set(w for w in ("bakers", "dough", "flour", "water", "salt", "yeast",
                                    "oven", "loaves", "crusty") if w in p)) for p in regexes)


def test_the_miner_finds_a_planted_length_cut_off():
    labelled = synthetic(60, lambda i: i % 3 == 0,
                         lambda rng, i: prose(rng, 60 + i % 7 if i % 3 == 0 else 10 + i % 30))
    longest_pass = max(len(x.texts.answer.strip()) for x in labelled if x.passed)
    assert Length(unit="chars", max=longest_pass) in mine(labelled)
    (chosen,) = kept(labelled)
    assert isinstance(chosen, Length) and chosen.max is not None
    result = evaluate(chosen, labelled)
    assert (result.coverage, result.ffr) == (1.0, 0.0)


def test_no_failures_no_candidates():
    assert mine(synthetic(10, lambda i: False, lambda rng, i: prose(rng, 10))) == []


# -- selection ---------------------------------------------------------------------------
def ev(name: str, caught: set[int], false: set[int] = frozenset(), fails: int = 6,
       passes: int = 4) -> Evaluation:
    return Evaluation(Regex(pattern=name), frozenset(f"f{i}" for i in caught),
                      frozenset(f"p{i}" for i in false), fails, passes)


def test_subsumed_candidates_are_dropped():
    strong, weak = ev("strong", {1, 2, 3}, {1}), ev("weak", {1, 2}, {1, 2})
    noisier = ev("noisier", {1, 2, 3, 4}, {1, 3})  # catches more, but fails another pass
    same = ev("same", {1, 2, 3}, {1})
    useless = ev("useless", set(), set())
    candidates, dropped = drop_subsumed([strong, weak, noisier, same, useless])
    assert [c.assertion.pattern for c in candidates] == ["strong", "noisier"]
    assert dropped == {weak.assertion.id: strong.assertion.id,
                       same.assertion.id: strong.assertion.id}


def greedy(evaluations: list[Evaluation], need: int) -> list[Evaluation]:
    """The usual greedy set cover: the candidate catching most uncovered failures first."""
    chosen, covered = [], set()
    while len(covered) < need:
        best = max(evaluations, key=lambda e: len(e.caught - covered))
        chosen.append(best)
        covered |= best.caught
    return chosen


def test_the_program_picks_the_minimum_set_where_greedy_picks_more():
    # greedy takes the biggest (4 failures), then needs both halves for the rest: 3;
    # the two halves alone cover all six
    big, left, right = ev("big", {1, 2, 4, 5}), ev("left", {1, 2, 3}), ev("right", {4, 5, 6})
    evaluations = [big, left, right]
    assert len(greedy(evaluations, 6)) == 3
    chosen = select(evaluations, alpha=1.0, tau=0.0)
    assert sorted(e.assertion.pattern for e in chosen.kept) == ["left", "right"]
    # and no single candidate covers all six: two is the minimum (checked exhaustively)
    assert not any(len(e.caught) == 6 for e in evaluations)
    assert any(len(a.caught | b.caught) == 6 for a, b in combinations(evaluations, 2))
    assert (chosen.covered, chosen.false_failures) == (6, 0)


def test_alpha_and_tau_are_respected():
    a = ev("a", {1, 2, 3}, {1})          # coverage 0.5, ffr 0.25
    b = ev("b", {4, 5}, {2, 3})          # coverage 0.33, ffr 0.5
    c = ev("c", {4}, set())
    loose = select([a, b, c], alpha=0.5, tau=0.25)
    assert [e.assertion.pattern for e in loose.kept] == ["a"]
    more = select([a, b, c], alpha=0.6, tau=0.25)  # 4 of 6 needed: a and c, b is too noisy
    assert sorted(e.assertion.pattern for e in more.kept) == ["a", "c"]
    assert more.covered == 4 and more.false_failures == 1
    everything = select([a, b, c], alpha=0.8, tau=0.75)
    assert sorted(e.assertion.pattern for e in everything.kept) == ["a", "b"]
    assert select([a, b, c], alpha=0.0).kept == []


def test_infeasible_names_the_best_coverage_within_tau():
    a, b = ev("a", {1, 2, 3}, {1}), ev("b", {4, 5}, {2, 3})
    with pytest.raises(ConfigError, match=r"best coverage within that false-failure rate is "
                       r"50% \(3 of 6, with 1 assertion") as info:
        select([a, b], alpha=0.8, tau=0.25)
    assert "--alpha to 0.50" in str(info.value)


# -- files -------------------------------------------------------------------------------
def test_the_file_round_trips_and_numbers_up(tmp_path):
    assertions = [Regex(pattern=r"\bbudget\b"), Length(unit="words", max=120),
                  JsonPath(path="steps.0", type="object"), Language(min_stopword_rate=0.1),
                  Overlap(min=0.05, max=0.9), Terms(terms=["in summary"], mode="forbidden"),
                  Items(min=2), LlmCriterion(name="cites_passage",
                                             question="Does the answer cite the passage?")]
    stats = {assertions[0].id: {"catches": 3, "coverage": 0.5, "coverage_ci": [0.2, 0.8]}}
    provenance = {"labels": 12, "judge_version": "judge-v2", "alpha": 0.6, "tau": 0.25}
    first = write_assertions(tmp_path, assertions, provenance, stats)
    second = write_assertions(tmp_path, assertions[:1], provenance, {})
    assert (first.name, second.name) == ("assertions-v1.yaml", "assertions-v2.yaml")
    loaded = read_assertions(first)
    assert loaded.assertions == assertions and loaded.version == "assertions-v1"
    assert [a.id for a in loaded.assertions] == [a.id for a in assertions]
    assert loaded.provenance == provenance and loaded.stats == stats
    assert loaded.criteria == assertions[-1:] and loaded.deterministic == assertions[:-1]


def test_a_damaged_file_names_the_entry(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("assertions:\n  - {kind: regex, pattern: ok}\n  - {kind: length, unit: "
                    "words}\n")
    with pytest.raises(ConfigError, match=r"assertions\[1\].*min, max or both"):
        read_assertions(path)
    path.write_text("version: x\n")
    with pytest.raises(ConfigError, match="no `assertions:` list"):
        read_assertions(path)
