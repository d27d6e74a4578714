"""How evenly seeds spread over transformation agents and instruction types, by choice rule.

    python -m benchmarks.choice_balance [--seeds 100,1000,10000]

The shipped AgentInstruct config (six skills, its agents and taxonomies), its shipped seeds,
then synthetic prose seeds in those numbers. `seed_position` (the rule of runs before the
choice rule was recorded: seed i takes the i-th window of each cycle) balances by
construction; `seed_id` (every new run's: the window is drawn from the seed's id, so a shard
of the input chooses as the whole run) is a uniform draw per seed. For each skill, rule and
input: the units of work, and the spread of uses per agent and per type as max / min and the
largest deviation from an even share. Prints a table, writes benchmarks/results/choice_balance.json."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from benchmarks.common import machine, print_table, write_json
from gristmill.config.load import load_config
from gristmill.flows.agentinstruct import Flow
from gristmill.flows.items import seed_id
from gristmill.flows.sampling import CHOICE_RULES, choice_index
from gristmill.seeds import SeedSource


def spread(counts: Counter[str], names: int) -> tuple[float, float]:
    """max / min uses, and the largest deviation from an even share (a fraction of it)."""
    uses = [counts.get(name, 0) for name in counts] + [0] * (names - len(counts))
    even = sum(uses) / names
    return (max(uses) / min(uses) if min(uses) else float("inf"),
            max(abs(u - even) for u in uses) / even if even else 0.0)


def balance(flow: Flow, seeds: list[tuple[str, str]], rule: str) -> list[dict[str, Any]]:
    agents: dict[str, Counter[str]] = {name: Counter() for name in flow.skills}
    types: dict[str, Counter[str]] = {name: Counter() for name in flow.skills}
    for position, (sid, kind) in enumerate(seeds):
        for skill, agent, generation in flow.assignments(kind, choice_index(rule, sid, position)):
            agents[skill.name][agent.name] += 1
            types[skill.name].update(t["name"] for t in flow.types_for(skill, generation))
    rows = []
    for name, skill in flow.skills.items():
        if not agents[name]:
            continue
        a_ratio, a_dev = spread(agents[name], len(flow.agent_cycles[name]))
        t_ratio, t_dev = spread(types[name], len(skill.taxonomy))
        rows.append({"skill": name, "units": sum(agents[name].values()),
                     "agents": len(flow.agent_cycles[name]), "agent_max_min": a_ratio,
                     "agent_max_dev": a_dev, "types": len(skill.taxonomy),
                     "type_max_min": t_ratio, "type_max_dev": t_dev})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100,1000,10000")
    args = parser.parse_args()
    config = load_config("agentinstruct")
    assert config.agentinstruct is not None
    flow = Flow(config.agentinstruct)
    inputs = {"shipped": [(s.id, s.kind) for s in SeedSource(config.seeds)]}
    for n in (int(x) for x in args.seeds.split(",")):
        inputs[f"{n:,} synthetic"] = [(seed_id("synthetic.jsonl", f"seed {i}"), "prose")
                                      for i in range(n)]
    rows = []
    for label, seeds in inputs.items():
        for rule in reversed(CHOICE_RULES):
            rows += [{"input": label, "seeds": len(seeds), "rule": rule, **row}
                     for row in balance(flow, seeds, rule)]
    ratio = "{:.2f}".format
    print_table(rows, [("input", "input", str), ("rule", "rule", str),
                       ("skill", "skill", str), ("units", "units", str),
                       ("agent_max_min", "agents max/min", ratio),
                       ("agent_max_dev", "agents max dev", "{:.0%}".format),
                       ("type_max_min", "types max/min", ratio),
                       ("type_max_dev", "types max dev", "{:.0%}".format)])
    path = write_json("choice_balance", {"machine": machine(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
