"""`suggest --llm`'s calls: the judge's backend (the run's config, its response cache)
proposes assertions (`gristmill.assertions.propose` builds the request and parses the answer)
and judges the `llm` proposals on the labelled records."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Sequence

from gristmill.assertions.evaluate import Evaluation
from gristmill.assertions.miner import Labelled
from gristmill.assertions.propose import (Proposals, evaluate_judged, parse_proposals,
                                          proposal_format, proposal_prompt)
from gristmill.assertions.vocabulary import Assertion, LlmCriterion
from gristmill.config.judge import CriterionConfig
from gristmill.flywheel.labels import LabelStore
from gristmill.flywheel.runrecords import run_records
from gristmill.flywheel.session import JudgeSession, current_judge
from gristmill.protocol import Request
from gristmill.runs.history import prompt_delta, versions


async def propose(run_dir: Path, failed: Sequence[Labelled], critiques: dict[str, str],
                  backend_url: str | None = None) -> Proposals:
    """Ask the judge's backend (the run's config) for proposals."""
    async with JudgeSession(run_dir, backend_url) as session:
        judge = current_judge(run_dir, session.config)
        model = judge.model or session.config.backends[judge.backend].model
        request = Request(model, [{"role": "user", "content": proposal_prompt(
            failed, critiques, [stage.prompt for stage in session.config.stages],
            latest_delta(run_dir))}], params={"temperature": 0.0, "max_tokens": 2000},
            response_format=proposal_format())
        completion = await session.client(judge).call(request)
    return parse_proposals(completion.text)


def latest_delta(run_dir: Path) -> str:
    """How the run's prompts changed in its last forced resume ('' with one version)."""
    numbers = sorted(versions(run_dir))
    return prompt_delta(run_dir, old=numbers[-2]) if len(numbers) > 1 else ""


async def judge_criteria(run_dir: Path, criteria: Sequence[LlmCriterion],
                         records: Sequence[dict[str, Any]], backend_url: str | None = None
                         ) -> dict[str, dict[str, bool]]:
    """Per record id, per criterion name: did the judge pass it (missing: no verdict). The
    criteria are asked after the judge's own, as a run with them in its file asks them."""
    if not criteria:
        return {}
    async with JudgeSession(run_dir, backend_url) as session:
        base = current_judge(run_dir, session.config)
        # after the judge's own criteria, as they are judged in a run (docs/assertions.md)
        judge = base.model_copy(update={"criteria": [*base.criteria, *(
            CriterionConfig(name=c.name, question=c.question) for c in criteria)]})
        judged = await session.judge(judge, records, [])
    return {i: {name: bool(v["passed"]) for name, v in (verdict.get("criteria") or {}).items()}
            for i, verdict in judged.verdicts.items()}


def llm_candidates(run_dir: Path, train: Sequence[Labelled], say: Any, *,
                   backend_url: str | None = None) -> tuple[list[Assertion], list[Evaluation]]:
    """The model's deterministic proposals (to evaluate like mined ones), and its `llm`
    proposals evaluated from the judge's verdicts on the training records."""
    with LabelStore(run_dir / "run.sqlite") as store:
        critiques = {i: label.critique for i, label in store.latest("").items()}
    records = run_records(run_dir)

    async def both() -> tuple[Proposals, dict[str, dict[str, bool]]]:
        got = await propose(run_dir, [x for x in train if not x.passed], critiques, backend_url)
        criteria = [a for a in got.assertions if isinstance(a, LlmCriterion)]
        return got, await judge_criteria(run_dir, criteria, [records[x.record_id] for x in train],
                                         backend_url)

    got, verdicts = asyncio.run(both())
    say(f"proposed by the model: {len(got.assertions)} valid, {len(got.invalid)} malformed "
        "(skipped)")
    for why in got.invalid:
        say(f"  skipped: {why}")
    return ([a for a in got.assertions if a.deterministic],
            [evaluate_judged(a, train, verdicts) for a in got.assertions
             if isinstance(a, LlmCriterion)])
