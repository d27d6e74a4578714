"""The data_to_text, text_extraction and text_classification skills: their agents, types and
goals; every template rendered for real seeds of each kind a skill accepts (the tables and web
pages of configs/seeds/ included); and a run of the three on the mock server, in which each
skill gets exactly the seed kinds it accepts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from gristmill.config.load import load_config, with_cli_overrides
from gristmill.flows.skills import VARIABLES, load_skill
from gristmill.flows.templates import compile_template
from gristmill.runs.runner import RunOptions, run
from gristmill.seeds import Seed, SeedSource, SeedsConfig
from tests.test_skills_content import SKILLS_DIR, load, source, taxonomy, template_fields

SEEDS = SKILLS_DIR.parent / "seeds"

# skill: (accepts, agents, taxonomy type names)
EXPECTED: dict[str, tuple[list[str], set[str], set[str]]] = {
    "data_to_text": (
        ["table", "prose"], {"data_table", "json_records", "key_value_facts", "identity"},
        {"full_description", "record_to_sentence", "highlighted_cells", "comparison",
         "trend_description", "ranking_and_extremes", "aggregate_statement",
         "executive_summary", "report_section", "caption", "news_lede",
         "plain_language_explanation", "data_caveats", "templated_listing"}),
    "text_extraction": (
        ["prose", "html"], {"news_report", "administrative_record", "chronicle", "identity"},
        {"entity_extraction_json", "event_extraction", "relation_extraction",
         "date_normalization", "quantity_extraction", "schema_form_filling", "table_extraction",
         "list_extraction", "entity_profile", "quotation_attribution", "timeline_extraction",
         "filtered_extraction", "contact_and_identifier_extraction",
         "evidence_grounded_extraction"}),
    "text_classification": (
        ["prose"], {"customer_message", "opinion_piece", "post_batch", "identity"},
        {"topic_classification", "sentiment_polarity", "sentiment_rating", "aspect_sentiment",
         "intent_detection", "stance_detection", "emotion_classification",
         "content_moderation", "multi_label_tagging", "hierarchical_classification",
         "urgency_triage", "genre_classification", "sarcasm_detection", "binary_criterion"}),
}
SKILLS = list(EXPECTED)


@pytest.mark.parametrize("skill", SKILLS)
def test_agents_types_and_goals(skill):
    accepts, agents, types = EXPECTED[skill]
    loaded = load_skill(skill, SKILLS_DIR)  # the engine's loader accepts the folder
    assert loaded.accepts == accepts
    assert {a.name for a in loaded.transform.agents} == agents
    assert [a.name for a in loaded.transform.agents if a.identity] == ["identity"]
    assert {t.name for t in loaded.taxonomy} == types
    assert len({t.definition for t in loaded.taxonomy}) == len(types)
    assert len({t.example for t in loaded.taxonomy}) == len(types)
    assert len(loaded.refine.goals) >= 5 and len(set(loaded.refine.goals)) == len(loaded.refine.goals)


def read(path: Path, kind: str, **options: Any) -> list[Seed]:
    return list(SeedSource(SeedsConfig(path=path, kinds=[kind], min_chars=0, **options)))


@pytest.fixture(scope="module")
def seeds() -> dict[str, Seed]:
    """A real seed of each kind: prose, a web page, a whole table and a chunk of a longer one."""
    [prose] = read(SEEDS / "demo" / "tides.txt", "prose")
    [page] = read(SEEDS / "web" / "news-article.html", "html")
    [table] = read(SEEDS / "tables" / "city-climate.csv", "table")
    chunk = read(SEEDS / "tables" / "library-loans.table.jsonl", "table",
                 table={"rows_per_chunk": 3})[0]
    assert chunk.extra["table"]["rows_total"] > len(chunk.extra["table"]["rows"])
    return {"prose": prose, "html": page, "table": table, "table_chunk": chunk}


def values(skill: str, seed: Seed, agent: str) -> dict[str, Any]:
    """What each template may see, with the seed's own structured values."""
    data, types = load(skill), taxonomy(skill)[:2]
    text = seed.text if agent == "identity" else "Transformed material from the seed."
    return {**seed.template_values(), "skill": skill, "agent": agent, "text": text,
            "types": types, "n": len(types), "instruction": "Do the task on the data below.",
            "type": types[0], "goals": data["refine"]["goals"][:2], "round": 2,
            "suggestions": ["Add a computed figure.", "Name the reader."],
            "answer": "The answer."}


def render(skill: str, where: str, given: dict[str, Any]) -> str:
    """The template at `where` (e.g. "generate.prompt") rendered with what its kind may see."""
    for name, kind, value in template_fields(load(skill)):
        if name == where:
            allowed = {k: v for k, v in given.items() if k in VARIABLES[kind]}
            return compile_template(source(skill, value)).render(allowed)
    raise KeyError(where)


def agent_prompt(skill: str, agent: str) -> str:
    index = [a["name"] for a in load(skill)["transform"]["agents"]].index(agent)
    return f"transform.agents[{index}].prompt"


@pytest.mark.parametrize("skill", SKILLS)
def test_every_template_renders_for_real_seeds_of_each_accepted_kind(skill, seeds):
    data = load(skill)
    kinds = [k for k in seeds if k.split("_")[0] in data["accepts"]]
    assert kinds, skill
    for kind in kinds:
        for agent in data["transform"]["agents"]:
            given = values(skill, seeds[kind], agent["name"])
            for where, _, value in template_fields(data):
                if value is None:
                    continue
                rendered = render(skill, where, given)  # StrictUndefined: a bad name raises
                assert rendered.strip(), f"{skill}/{kind}/{agent['name']}: {where} is empty"
                assert "{{" not in rendered and "{%" not in rendered, f"{skill}: {where}"
                assert "None" not in rendered, f"{skill}/{kind}: {where} prints None"


def test_data_to_text_describes_a_table_seed_from_its_columns(seeds):
    chunk, table = seeds["table_chunk"], seeds["table"]
    shown, total = len(chunk.extra["table"]["rows"]), chunk.extra["table"]["rows_total"]
    tidy = render("data_to_text", agent_prompt("data_to_text", "data_table"),
                  values("data_to_text", chunk, "data_table"))
    assert "branch, month, loans, new_members, events, busiest_day" in tidy
    assert f"({shown} of its {total} rows)" in tidy and chunk.text in tidy
    asked = render("data_to_text", "generate.prompt", values("data_to_text", chunk, "identity"))
    assert "ask only about the rows shown" in asked and chunk.text in asked
    whole = render("data_to_text", "generate.prompt", values("data_to_text", table, "identity"))
    assert "columns city, country, jan_mean_c" in whole and "rows shown" not in whole
    prose = render("data_to_text", agent_prompt("data_to_text", "data_table"),
                   values("data_to_text", seeds["prose"], "data_table"))
    assert "Turn the facts of the text below into a data table" in prose
    assert "with the columns" not in prose
    facts = render("data_to_text", "generate.prompt", values("data_to_text", seeds["prose"],
                                                             "identity"))
    assert "treat those figures and facts as the data" in facts


def test_text_extraction_names_the_web_page_it_reads(seeds):
    page = seeds["html"]
    assert page.title
    for agent in ("news_report", "administrative_record", "chronicle"):
        prompt = render("text_extraction", agent_prompt("text_extraction", agent),
                        values("text_extraction", page, agent))
        assert f'main text of the web page "{page.title}"' in prompt and page.text in prompt
        prose = render("text_extraction", agent_prompt("text_extraction", agent),
                       values("text_extraction", seeds["prose"], agent))
        assert "web page" not in prose and "source text" in prose
    asked = render("text_extraction", "generate.prompt", values("text_extraction", page, "identity"))
    assert asked.startswith(f'Below is a web page text (the page is titled "{page.title}")')


def test_answers_and_records_have_the_skills_shapes(seeds):
    for skill in SKILLS:
        kind = EXPECTED[skill][0][0]
        given = values(skill, seeds[kind], "identity")
        user = render(skill, "record.user", given)
        assert user.index(given["instruction"]) < user.index(seeds[kind].text), skill
    extraction = render("text_extraction", "answer.prompt",
                        values("text_extraction", seeds["prose"], "identity"))
    assert "the JSON (without code fences)" in extraction
    labels = render("text_classification", "answer.prompt",
                    values("text_classification", seeds["prose"], "identity"))
    assert "first the label(s)" in labels and 'one line beginning "Reason:"' in labels
    asks = render("text_classification", "generate.prompt",
                  values("text_classification", seeds["prose"], "customer_message"))
    assert "State the label set in full" in asks and "Below is a customer message." in asks


async def test_the_three_skills_run_on_the_mock_server_on_the_kinds_they_accept(mock_server,
                                                                                tmp_path):
    config = with_cli_overrides(load_config("agentinstruct", [
        f"agentinstruct.skills=[{','.join(SKILLS)}]", "agentinstruct.agents_per_seed=4",
        "agentinstruct.refine_rounds=1", "seeds.kinds=[prose,code,html,table]", "judge=null"]),
        backend_url=mock_server.base_url)
    summary = await run(config, RunOptions(run_dir=tmp_path, progress=False))
    out = [orjson.loads(line) for line in (tmp_path / "output.jsonl").read_bytes().splitlines()]
    assert out and summary["rejects"] == 0 and summary["records"] == len(out)
    seeds = {s.id: s for s in SeedSource(config.seeds)}
    kinds = {skill: Counter(seeds[r["seed_id"]].kind for r in out if r["skill"] == skill)
             for skill in SKILLS}
    for skill, (accepts, agents, _) in EXPECTED.items():
        assert set(kinds[skill]) == set(accepts), (skill, kinds[skill])
        assert {r["agent"] for r in out if r["skill"] == skill} == agents
    as_is = [r for r in out if r["skill"] == "data_to_text" and r["agent"] == "identity"
             and seeds[r["seed_id"]].kind == "table"]
    assert as_is
    for record in as_is:  # the instruction, then the table itself
        user = record["messages"][-2]["content"]
        table = seeds[record["seed_id"]].text
        assert user.endswith(table) and user.count(table) == 1
