"""The `gristmill` command: a thin layer over the Python API.

Only argparse is imported at start-up, so `gristmill --help` is instant; each command imports
what it needs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from gristmill.cli import assertions as cli_assertions
from gristmill.cli import flywheel as cli_flywheel
from gristmill.cli import history as cli_history
from gristmill.cli.cluster import add_cluster_args
from gristmill.cli.execute import execute
from gristmill.errors import ConfigError
from gristmill.runs.outcome import exit_code_table


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a pipeline YAML file, or the name of a shipped config "
                   "(e.g. demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set stages.answer.workers=8 "
                   "(repeatable; values are YAML)")


def _run_args(p: argparse.ArgumentParser, run_dir: bool = True) -> None:
    if run_dir:
        p.add_argument("--run-dir", type=Path, help="run directory (default: runs/<config-name>-"
                       "<timestamp>); an existing one is resumed")
    p.add_argument("--limit", type=int, help="admit at most N seeds (a resume keeps the run's "
                   "limit unless given another; 0: no limit)")
    p.add_argument("--target-records", type=int, metavar="N", help="stop admitting seeds once "
                   "N records are kept; dataset.jsonl gets exactly N, the first in seed order "
                   "(a resume keeps the run's target unless given another; 0: none)")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    p.add_argument("--no-cache", action="store_true", help="do not replay or store answers")
    p.add_argument("--force", action="store_true", help="resume even if the config changed "
                   "fields that change answers")
    p.add_argument("--metrics-port", type=_port, metavar="P", help="serve Prometheus "
                   "/metrics on this port while the run lasts (a resume keeps it; 0: none)")
    p.add_argument("--metrics-host", metavar="HOST", help="with --metrics-port: the address "
                   "to listen on (default 127.0.0.1; a resume keeps it)")
    p.add_argument("--metrics-linger", type=float, default=0.0, metavar="S", help="keep "
                   "/metrics up S seconds after the run ends (default 0)")
    p.add_argument("--budget-usd", type=_usd, metavar="X", help="stop (exit 5) before "
                   "spending more than X USD, earlier sessions included; every model needs a "
                   "price (a resume keeps the run's budget unless given another; 0: none)")


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: give a port from 1 to 65535 (0: none)")
    return int(text)


def _usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give an amount in USD, e.g. 2.50 (0: none)")
    return value


def _gpu_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give GPU ids like 0,1,2,3") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gristmill", description="Mill seed documents into "
                                     "instruction-tuning data.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="exit codes (also in RUN/summary.json as "
                                     "status, stop_reason, exit_code):\n" + exit_code_table())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a pipeline")
    _config_args(p)
    _run_args(p)
    p.add_argument("--seeds", type=Path, help="read seeds from this path instead")
    p.add_argument("--backend-url", help="send every stage to this OpenAI-style base URL "
                   "(ending in /v1)")
    p.add_argument("--dry-run", action="store_true", help="show the first seeds' prompts and "
                   "estimate requests and tokens; call no model")
    p.add_argument("--keep-rate", type=float, metavar="R", help="with --dry-run "
                   "--target-records: records kept per seed, to estimate the seeds needed")
    p.add_argument("--like", type=Path, metavar="RUN", help="with --dry-run --target-records: "
                   "measure the records kept per seed from this earlier run directory")
    p.add_argument("--vllm-model", metavar="NAME", help="start `vllm serve NAME` (a Hugging "
                   "Face id or a local folder) for every stage, and stop it at the end")
    p.add_argument("--gpus", type=_gpu_list, metavar="0,1,...", help="with --vllm-model: "
                   "the GPUs to use, one server per GPU (or per --gpus-per-server group)")
    p.add_argument("--gpus-per-server", type=int, metavar="N", help="tensor-parallel size: "
                   "each server spans N of the --gpus")
    add_cluster_args(p)

    p = sub.add_parser("demo", help="the main job: the AgentInstruct demo on a small model "
                       "served by vLLM on this machine's CPU (set up on first use)")
    _run_args(p)
    p.add_argument("--mock", action="store_true", help="rehearse on the mock server instead "
                   "(seconds, no model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the demo config (configs/demo_agentinstruct.yaml)")

    p = sub.add_parser("resume", help="continue a stopped or crashed run")
    p.add_argument("run_dir", type=Path)
    _run_args(p, run_dir=False)
    add_cluster_args(p, shards=False)

    p = sub.add_parser("status", help="progress of a running or stopped run")
    p.add_argument("run_dir", type=Path)

    p = sub.add_parser("batches", help="a run's hosted batch files (mode: batch): list them, "
                       "or cancel those not ended")
    p.add_argument("action", choices=["list", "cancel"])
    p.add_argument("run_dir", type=Path)

    p = sub.add_parser("cache", help="the response cache of a run")
    p.add_argument("action", choices=["stats"])
    p.add_argument("run_dir", type=Path)

    p = sub.add_parser("validate", help="check a config and print it resolved")
    _config_args(p)

    p = sub.add_parser("dedup", help="write RUN/dataset.jsonl without (near-)duplicate "
                       "instructions")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--threshold", type=float, default=0.8)

    p = sub.add_parser("export", help="export a run's records: parquet, hf, sharegpt, openai")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", required=True, choices=("parquet", "hf", "sharegpt", "openai"))
    p.add_argument("--out", type=Path, help="output path (default: RUN/export/...)")
    p.add_argument("--input", type=Path, help="records to read (default: RUN/dataset.jsonl, "
                   "else RUN/output.jsonl)")
    p.add_argument("--license", help="license id for the dataset card (hf)")
    p.add_argument("--split-by", choices=("skill", "type", "agent", "model"),
                   help="one split per value of this field: a folder of one file per split, "
                        "or for hf a DatasetDict")

    cli_flywheel.add_parsers(sub)
    cli_assertions.add_parsers(sub)
    cli_history.add_parsers(sub)

    sub.add_parser("mock-server", help="serve the mock OpenAI-compatible API "
                   "(see `gristmill mock-server --help`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mock-server"]:
        from gristmill.backends.mock.server import main as serve

        return serve(argv[1:]) or 0
    args = build_parser().parse_args(cli_flywheel.route(argv))
    try:
        return {"run": cmd_run, "demo": cmd_demo, "validate": cmd_validate,
                "export": cmd_export, "resume": cmd_resume, "status": cmd_status,
                "cache": cmd_cache, "dedup": cmd_dedup, "batches": cmd_batches,
                **cli_flywheel.COMMANDS, **cli_assertions.COMMANDS,
                **cli_history.COMMANDS}[args.command](args)
    except ConfigError as exc:
        print(f"gristmill: config error: {exc}", file=sys.stderr)
        return 2


def cmd_resume(args: argparse.Namespace) -> int:
    from gristmill.config.load import read_run_config, validate_config

    config = validate_config(read_run_config(args.run_dir),
                             source=str(args.run_dir / "config.yaml"))
    warn_about_keys(config)
    return execute(config, args)


def cmd_status(args: argparse.Namespace) -> int:
    from gristmill.runs.status import describe

    print(describe(args.run_dir))
    return 0


def cmd_batches(args: argparse.Namespace) -> int:
    from gristmill.runs.status import batch_lines

    if not (args.run_dir / "config.yaml").is_file():
        raise ConfigError(f"{args.run_dir}: no config.yaml; is this a run directory?")
    if args.action == "list":
        print("\n".join(batch_lines(args.run_dir, every=True)) or "no batch files")
        return 0
    import asyncio

    from gristmill.backends.openai_batch.cancel import cancel_open
    from gristmill.config.load import read_run_config, validate_config

    config = validate_config(read_run_config(args.run_dir),
                             source=str(args.run_dir / "config.yaml"))
    said = asyncio.run(cancel_open(args.run_dir, config))
    print("\n".join(said) or "no open batch to cancel")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from gristmill.runs.status import cache_stats

    for key, value in cache_stats(args.run_dir).items():
        print(f"{key}: {value}")
    return 0


def cmd_dedup(args: argparse.Namespace) -> int:
    from gristmill.dataset.dedup import dedup_run

    cli_flywheel.require_run_dir(args.run_dir)
    stats = dedup_run(args.run_dir, args.threshold)
    print(" · ".join(f"{k} {v:,}" for k, v in stats.items()))
    print(f"wrote {args.run_dir / 'dataset.jsonl'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gristmill.dataset.export import export_run

    path = export_run(args.run_dir, args.format, args.out, args.input, license_id=args.license,
                      split_by=args.split_by, say=lambda message: print(message, file=sys.stderr))
    print(path)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from gristmill.config.load import load_config

    config = load_config(args.config, args.overrides)
    warn_about_keys(config)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    print(f"ok: {len(config.stages)} stage(s), backends: {', '.join(config.backends)}",
          file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gristmill.config.load import load_config, with_cli_overrides

    config = load_config(args.config, args.overrides)
    config = with_cli_overrides(config, seeds=args.seeds, backend_url=args.backend_url,
                                vllm_model=args.vllm_model, gpus=args.gpus,
                                gpus_per_server=args.gpus_per_server)
    target = config.target_records if args.target_records is None else args.target_records
    if args.keep_rate is not None and not (args.dry_run and target):
        raise ConfigError("--keep-rate estimates a target: give it with --dry-run "
                          "--target-records N")
    if args.like is not None and not args.dry_run:
        raise ConfigError("--like measures an earlier run for an estimate: give it with "
                          "--dry-run (and --target-records N for the seeds)")
    if args.dry_run:
        return print_dry_run(config, args.limit, target, args.keep_rate, args.like)
    warn_about_keys(config)
    return execute(config, args)


def warn_about_keys(config: Any) -> None:
    """A key set in the environment that a backend will not send: say so, and how."""
    import os

    from gristmill.config.keys import key_warnings

    for warning in key_warnings(config.backends, os.environ):
        print(f"gristmill: warning: {warning}", file=sys.stderr)


def print_dry_run(config: Any, limit: int | None, target: int | None = None,
                  keep_rate: float | None = None, like: Path | None = None) -> int:
    from gristmill.runs import cost_plan
    from gristmill.runs.dry_run import dry_run
    from gristmill.runs.target_plan import describe, estimate

    plan = dry_run(config, limit)
    for shown in plan["prompts"]:
        head = {k: v for k, v in shown.items() if not k.endswith("prompt") and k != "system"}
        print("── " + " · ".join(f"{k}: {v}" for k, v in head.items()))
        for key in ("system", "prompt", "transform_prompt", "generate_prompt"):
            if shown.get(key):
                print(f"[{key}]\n{shown[key]}\n")
    judged = plan["steps"].get("judge")
    print(f"dry run: {plan['seeds']:,} seeds -> about {plan['requests']:,} requests"
          + (f" ({judged['requests']:,} of them the judge's)" if judged else "") +
          f", at most {plan['prompt_tokens']:,} prompt + {plan['completion_tokens']:,} "
          "completion tokens (every answer at its max_tokens); no model was called")
    cost = cost_plan.estimate_cost(config, plan, like)
    if text := cost_plan.describe(cost):
        print(text)
    if target:
        est = estimate(plan, target, keep_rate, like)
        print(describe(est))
        if cost["priced"]:  # the dry run's cost per seed, times the seeds the target takes
            print(cost_plan.describe(cost, est["seeds"] / plan["seeds"],
                                     f" of {target:,} records"))
    return 0


DEMO_CONFIG = "demo_agentinstruct"


def cmd_demo(args: argparse.Namespace) -> int:
    """The AgentInstruct demo on SmolLM2-135M-Instruct served by a `vllm serve` it starts
    (vLLM's CPU build and the model are provisioned into the user's cache on first use), or on
    the mock server with --mock. The server is stopped on exit, Ctrl-C and errors."""
    from gristmill.config.load import load_config, with_cli_overrides
    from gristmill.runs.rundir import default_run_dir

    config = load_config(DEMO_CONFIG, args.overrides)
    if args.mock:
        from gristmill.backends.mock.process import MockServerProcess

        with MockServerProcess() as mock:
            print(f"demo: mock model server at {mock.base_url}", file=sys.stderr)
            return execute(with_cli_overrides(config, backend_url=mock.base_url), args)
    from gristmill.backends.vllm.smollm2 import demo_server, seeded_fields
    from gristmill.backends.vllm.runtime import RuntimeProvisionError
    from gristmill.backends.vllm.server import ServerDied

    if seeded_fields(config):
        raise ConfigError(f"{', '.join(seeded_fields(config))}: vLLM's CPU build crashes on "
                          "seeded requests whose prompts it splits; remove the seed (or use "
                          "--mock)")

    args.run_dir = args.run_dir or default_run_dir(config.name)
    say = lambda line: print(f"demo: {line}", file=sys.stderr)  # noqa: E731
    try:
        server = demo_server(args.run_dir / "vllm-serve.log", say)
        return execute(config, args, server=server, say=say)
    except (RuntimeProvisionError, ServerDied, TimeoutError) as exc:  # each names its log
        print(f"gristmill: {exc}", file=sys.stderr)
        return 1



if __name__ == "__main__":
    sys.exit(main())
