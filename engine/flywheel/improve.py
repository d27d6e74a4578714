"""`gristmill flywheel improve RUN`: one turn of the flywheel from the labels a run has.

    1. align the judge (`gristmill judge align`), when the run has one;
    2. mine and select assertions (`gristmill assertions suggest`): RUN/assertions/assertions-v<N>.yaml;
    3. write the next run's config: the run's config with that file in the validators that
       make the records' answers (the last stage's, or the AgentInstruct flow's) and the
       aligned judge as its judge (the file's LLM criteria join it when the config is read).

The human review stays its own command: this only reads the labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from gristmill.errors import ConfigError

Say = Callable[[str], None]


def next_config(config: dict[str, Any], assertions: Path,
                judge: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The run's dumped config with the assertion file (and the aligned judge; the default
    judge when the file has LLM criteria and the config no judge to answer them); also where
    the file went, by dotted path."""
    from gristmill.assertions.files import read_assertions

    data = dict(config)
    if data.get("agentinstruct") is not None:
        flow = dict(data["agentinstruct"])
        flow["validators"] = {**(flow.get("validators") or {}), "assertions": str(assertions)}
        data["agentinstruct"], where = flow, "agentinstruct.validators.assertions"
    else:
        stages = [dict(s) for s in data["stages"]]
        stages[-1]["validators"] = {**(stages[-1].get("validators") or {}),
                                    "assertions": str(assertions)}
        data["stages"], where = stages, f"stages[{len(stages) - 1}].validators.assertions"
    if judge is not None:
        data["judge"] = judge
    elif data.get("judge") is None and read_assertions(assertions).criteria:
        data["judge"] = {}
    return data, where


async def improve(run_dir: Path, out: Path | None = None, *, backend_url: str | None = None,
                  alpha: float | None = None, tau: float | None = None,
                  say: Say = print) -> Path:
    from gristmill.assertions.files import read_assertions
    from gristmill.assertions.select import ALPHA, TAU
    from gristmill.assertions.suggest import suggest
    from gristmill.config.load import read_run_config, validate_config
    from gristmill.config.yaml_file import read_yaml
    from gristmill.dataset.files import write_atomic
    from gristmill.flywheel.align import align_run
    from gristmill.flywheel.session import judge_versions

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    judge = None
    if config.get("judge") is not None:
        say("1. judge align")
        await align_run(run_dir, backend_url=backend_url, say=lambda line: say(f"   {line}"))
        versions = judge_versions(run_dir)
        judge = read_yaml(versions[max(versions)])
    else:
        say("1. judge align: skipped (the run has no `judge:`)")
    say("2. assertions suggest")
    path = suggest(run_dir, ALPHA if alpha is None else alpha, TAU if tau is None else tau,
                   say=lambda line: say(f"   {line}")).resolve()
    loaded = read_assertions(path)
    data, where = next_config(config, path, judge)
    out = (out or run_dir / "next-config.yaml").resolve()
    try:
        validate_config(data, source=str(out))
    except ConfigError as exc:
        raise ConfigError(f"the next config would not be valid: {exc}") from None
    write_atomic(out, yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())
    say(f"3. next config: {out}")
    say(f"   {where}: {path.name} ({len(loaded.deterministic)} check(s)"
        + (f", {len(loaded.criteria)} LLM criteria for the judge" if loaded.criteria else "")
        + ")" + (f"; judge: {data['judge'].get('version', 'default')}"
                 if data.get("judge") is not None else ""))
    say(f"next: gristmill run {out} --run-dir <NEW_RUN>")
    say("      then label it with `gristmill review <NEW_RUN>` and improve again")
    return out
