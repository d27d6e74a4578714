"""The AgentInstruct flow end to end against the mock server (schema-valid JSON mode)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from gristmill.config.pipeline import AgentInstructConfig
from gristmill.config.load import load_config, with_cli_overrides
from gristmill.errors import ConfigError
from gristmill.flows.agentinstruct import Flow, stage_names
from gristmill.flows.sampling import choice_index
from gristmill.runs.runner import RunOptions, run
from tests.openai_format import format_errors

SKILLS = ["reading_comprehension", "text_modification", "tool_use", "coding",
          "open_domain_qa", "brain_teaser"]


def flow_config(base_url: str, skills: list[str], **settings):
    config = with_cli_overrides(load_config("agentinstruct"), backend_url=base_url)
    ai = config.agentinstruct.model_copy(update={"skills": skills, **settings})
    return config.model_copy(update={"agentinstruct": ai})


def records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("skill", SKILLS)
async def test_each_skill_end_to_end(mock_server, tmp_path, skill):
    config = flow_config(mock_server.base_url, [skill], agents_per_seed=2, refine_rounds=2)
    summary = await run(config, RunOptions(run_dir=tmp_path, progress=False))
    out = records(tmp_path / "output.jsonl")
    assert out and summary["records"] == len(out) and summary["rejects"] == 0
    names = stage_names(config.agentinstruct)
    for record in out:
        assert record["skill"] == skill
        roles = [m["role"] for m in record["messages"]]
        if "tools" in record:  # a tool_use conversation: calls, results, a closing answer
            assert format_errors({k: record[k] for k in ("messages", "tools")}) == []
        else:
            assert roles[-2:] == ["user", "assistant"] and roles[0] in ("system", "user")
            assert all(isinstance(m["content"], str) and m["content"] for m in record["messages"])
        assert record["type"] and record["agent"] and record["seed_id"] and record["model"]
        stages = [step["stage"] for step in record["lineage"]]
        assert stages == ["seed", *names]
        assert [r["round"] for r in record["refinements"]] == [1, 2]
        assert all(r["suggestions"] and r["instruction"] for r in record["refinements"])
        assert record["usage"]["prompt_tokens"] > 0 and record["usage"]["completion_tokens"] > 0
    assert summary["by_skill"] == {skill: len(out)}


async def test_fan_out_counts_match_the_config(mock_server, tmp_path):
    config = flow_config(mock_server.base_url, ["reading_comprehension", "coding"],
                         agents_per_seed=3, refine_rounds=1)
    flow = Flow(config.agentinstruct)
    summary = await run(config, RunOptions(run_dir=tmp_path, progress=False))
    seeds = summary["seeds"]
    expected = 0
    from gristmill.seeds import SeedSource
    for index, seed in enumerate(SeedSource(config.seeds)):
        for skill, agent, generation in flow.assignments(getattr(seed, "kind", "prose"),
                                                         choice_index("seed_id", seed.id, index)):
            expected += len(flow.types_for(skill, generation))
    assert seeds > 0 and summary["records"] == expected
    stages = {s["name"]: s for s in summary["stages"]}
    assert stages["generate"]["emitted"] == expected
    assert stages["transform"]["done"] == stages["plan"]["emitted"]


async def test_same_seeds_same_requests_same_records(mock_server, tmp_path):
    config = flow_config(mock_server.base_url, ["reading_comprehension", "tool_use"])
    outputs = []
    for name in ("a", "b"):
        mock_server.reset()
        await run(config, RunOptions(run_dir=tmp_path / name, progress=False, limit=5))
        outputs.append(sorted((tmp_path / name / "output.jsonl").read_bytes().splitlines()))
        outputs.append(mock_server.stats()["requests"])
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3] and outputs[0]


@pytest.mark.parametrize("shards", [2, 3])
async def test_the_shards_of_a_run_make_the_records_of_the_whole(mock_server, tmp_path, shards):
    """Each shard sees only its seeds, at other places in its stream than in the whole input:
    a seed's agents and types are keyed by its id, so together the shards write exactly the
    records of one run over everything (under the old rule, by position, they would not)."""
    config = flow_config(mock_server.base_url, ["reading_comprehension", "coding"])

    async def records_of(name: str, shard: tuple[int, int] | None) -> set[tuple]:
        await run(config, RunOptions(run_dir=tmp_path / name, progress=False, shard=shard))
        return {(r["id"], r["agent"], r["type"], r["messages"][-1]["content"])
                for r in records(tmp_path / name / "output.jsonl")}

    whole = await records_of("whole", None)
    parts = [await records_of(f"shard-{k}", (k, shards)) for k in range(shards)]
    assert sum(map(len, parts)) == len(whole) and set().union(*parts) == whole
    assert sum(1 for part in parts if part) >= 2  # the split did split


def test_a_run_from_before_the_choice_rule_keeps_choosing_by_position(tmp_path):
    from gristmill.runs.rundir import RunDir

    fresh = RunDir(tmp_path / "new")
    assert fresh.choice_rule() == "seed_id"
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text("name: x\n")
    (old / "manifest.json").write_bytes(orjson.dumps({"skills_digest": "d"}))
    assert RunDir(old).choice_rule() == "seed_position"
    (old / "manifest.json").write_bytes(orjson.dumps({"choices": "seed_id"}))
    assert RunDir(old).choice_rule() == "seed_id"
    assert choice_index("seed_position", "abc", 7) == 7
    assert choice_index("seed_id", "abc", 7) == choice_index("seed_id", "abc", 9) != 7


def test_agents_and_types_are_balanced_and_reproducible():
    flow = Flow(AgentInstructConfig(skills=["reading_comprehension"], agents_per_seed=2))
    skill = flow.skills["reading_comprehension"]
    agents, types = Counter(), Counter()
    for seed_index in range(430):
        for skill_, agent, generation in flow.assignments("prose", seed_index):
            agents[agent.name] += 1
            types.update(t["name"] for t in flow.types_for(skill_, generation))
    assert len(agents) == len(skill.transform.agents) and max(agents.values()) - min(agents.values()) <= 1
    assert len(types) == len(skill.taxonomy) and max(types.values()) - min(types.values()) <= 1
    again = Flow(AgentInstructConfig(skills=["reading_comprehension"], agents_per_seed=2))
    assert [a.name for _, a, _ in again.assignments("prose", 7)] == \
        [a.name for _, a, _ in flow.assignments("prose", 7)]
    assert flow.assignments("code", 0) == []  # reading comprehension takes prose only


def test_only_the_named_transformation_agents_are_used():
    flow = Flow(AgentInstructConfig(skills=["reading_comprehension", "open_domain_qa"],
                                    agents=["poem", "identity"]))
    used = {(skill.name, agent.name) for i in range(20)
            for skill, agent, _ in flow.assignments("prose", i)}
    assert {name for _, name in used} <= {"poem", "identity"}
    assert {("reading_comprehension", "poem"), ("reading_comprehension", "identity")} <= used
    with pytest.raises(ConfigError, match=r"agentinstruct.agents: skill 'reading_comprehension' "
                       r"has none of sonnet; its agents are: argument_passage, debate"):
        Flow(AgentInstructConfig(skills=["reading_comprehension"], agents=["sonnet"]))


async def test_unparseable_answers_are_counted_rejects(mock_server, tmp_path):
    config = flow_config(mock_server.base_url, ["open_domain_qa"], json_schema=False)
    summary = await run(config, RunOptions(run_dir=tmp_path, progress=False))
    assert summary["rejects"] > 0
    assert any("generate: parse" in reason for reason in summary["rejects_by_reason"])
    rejects = records(tmp_path / "rejects.jsonl")
    assert all(r["reason"] and r["stage"] for r in rejects)


def test_dry_run_calls_no_model(mock_server, tmp_path):
    mock_server.reset()
    result = subprocess.run([sys.executable, "-m", "gristmill", "run", "agentinstruct",
                             "--backend-url", mock_server.base_url, "--dry-run", "--limit", "4"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "dry run: 4 seeds" in result.stdout and "[generate_prompt]" in result.stdout
    assert mock_server.stats()["requests"] == 0
    assert not (tmp_path / "runs").exists()
