"""The `gristmill` commands of the data flywheel: `judge align`, `flywheel`, `review`,
`labels export` and `report` (implementations in engine/flywheel/, imported by each command
when it runs)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from gristmill.errors import ConfigError


def add_parsers(sub: Any) -> None:
    _add_flywheel_commands(sub)
    _review_parser(sub)
    _labels_parser(sub)
    _report_parser(sub)


def _add_flywheel_commands(sub: Any) -> None:
    judge = sub.add_parser("judge", help="the LLM judge of a run: `judge align RUN`")
    actions = judge.add_subparsers(dest="judge_action", required=True, metavar="ACTION")
    p = actions.add_parser("align", help="measure judge-human agreement, choose the few-shot "
                           "set that raises it, write RUN/judge/judge-v<N>.yaml")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--backend-url", help="send judge calls to this OpenAI-style base URL")
    p.add_argument("--ffr-bound", type=float, default=0.2, help="most false failures (human-"
                   "passed records the judge fails) a chosen judge may have on dev (default 0.2)")
    p = sub.add_parser("flywheel", help="re-judge a run with its newest aligned judge and write "
                       "RUN/dataset.judge-v<N>.jsonl; `flywheel improve RUN`: align, suggest "
                       "assertions, write the next run's config")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--backend-url", help="send judge calls to this OpenAI-style base URL")
    p.add_argument("--judge", type=Path, help="a judge config (default: the newest "
                   "RUN/judge/judge-v<N>.yaml)")


    p = sub.add_parser(IMPROVE, prog="gristmill flywheel improve", description="Align the judge, "
                       "mine and select assertions from the labels, and write the next run's "
                       "config with them (docs/assertions.md).")  # no help=: reached by route()
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="the next config (default RUN/next-config.yaml)")
    p.add_argument("--backend-url", help="send judge calls to this OpenAI-style base URL")
    p.add_argument("--alpha", type=float, help="least coverage of human failures (default 0.6)")
    p.add_argument("--tau", type=float, help="most false failures (default 0.25)")


IMPROVE = "flywheel-improve"


def route(argv: list[str]) -> list[str]:
    """`flywheel improve RUN` is its own command (`flywheel RUN` re-judges)."""
    return [IMPROVE, *argv[2:]] if argv[:2] == ["flywheel", "improve"] else argv


def cmd_improve(args: argparse.Namespace) -> int:
    import asyncio

    from gristmill.flywheel.improve import improve
    from gristmill.runs.event_loop import new_event_loop

    require_run_dir(args.run_dir)
    for name in ("alpha", "tau"):
        if getattr(args, name) is not None and not 0 <= getattr(args, name) <= 1:
            raise ConfigError(f"--{name} {getattr(args, name)}: a fraction between 0 and 1")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(improve(args.run_dir, args.out, backend_url=args.backend_url,
                           alpha=args.alpha, tau=args.tau))
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    import asyncio

    from gristmill.flywheel.align import align_run
    from gristmill.runs.event_loop import new_event_loop

    if not 0 <= args.ffr_bound <= 1:
        raise ConfigError(f"--ffr-bound {args.ffr_bound}: a fraction between 0 and 1")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(align_run(args.run_dir, backend_url=args.backend_url,
                             ffr_bound=args.ffr_bound))
    return 0


def cmd_flywheel(args: argparse.Namespace) -> int:
    import asyncio

    from gristmill.flywheel.rejudge import flywheel_run
    from gristmill.runs.event_loop import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(flywheel_run(args.run_dir, backend_url=args.backend_url,
                                judge_path=args.judge))
    return 0


def _review_parser(sub: Any) -> None:
    p = sub.add_parser("review", help="label a run's records on a local web page")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host; "
                   "requests then need the token printed in the URL")
    p.add_argument("--records", type=Path, help="records to review (default RUN/output.jsonl)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling order")
    p.add_argument("--reviewer", default=os.environ.get("USER", ""),
                   help="name stored with each label (default $USER)")


def cmd_review(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import sys

    from gristmill.flywheel.review_server import ReviewApp, binding_token, serve

    require_run_dir(args.run_dir)
    token = binding_token(args.host, args.allow_remote)
    app = ReviewApp(args.run_dir, token=token, records=args.records, seed=args.seed,
                    reviewer=args.reviewer,
                    say=lambda line: print(f"gristmill review: {line}", file=sys.stderr))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(app, args.host, args.port, stop,
                    lambda url: print(f"review page: {url}  (Ctrl-C to stop)", flush=True))

    asyncio.run(main())
    return 0


def _labels_parser(sub: Any) -> None:
    labels = sub.add_parser("labels", help="a run's human labels: `labels export RUN`")
    actions = labels.add_subparsers(dest="labels_action", required=True, metavar="ACTION")
    p = actions.add_parser("export", help="write the labels as JSONL, one label a line")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="output file (default: stdout)")
    p.add_argument("--all", action="store_true", dest="every",
                   help="every label ever given (default: the one in force per record and "
                   "criterion)")


def cmd_labels(args: argparse.Namespace) -> int:
    import sys

    from gristmill.dataset.files import write_atomic
    from gristmill.flywheel.label_export import export_lines

    require_run_dir(args.run_dir)
    lines = export_lines(args.run_dir, args.every)
    if args.out is None:
        sys.stdout.buffer.writelines(lines)
    else:
        write_atomic(args.out, b"".join(lines))
        print(f"wrote {len(lines)} label(s) to {args.out}")
    return 0


def _report_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="write RUN/report.html: a run's health at a glance")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="output path (default RUN/report.html)")


def cmd_report(args: argparse.Namespace) -> int:
    from gristmill.flywheel.report import write_report

    require_run_dir(args.run_dir)
    print(write_report(args.run_dir, args.out))
    return 0


def require_run_dir(run_dir: Path) -> None:
    if not (run_dir / "output.jsonl").is_file():
        raise ConfigError(f"{run_dir}: no output.jsonl; is this a run directory?")


COMMANDS = {"judge": cmd_judge, "flywheel": cmd_flywheel, IMPROVE: cmd_improve, "review": cmd_review,
            "labels": cmd_labels, "report": cmd_report}
