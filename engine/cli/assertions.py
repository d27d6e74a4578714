"""`gristmill assertions suggest RUN` and `gristmill assertions report RUN` (implementations in
engine/assertions/, imported when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gristmill.errors import ConfigError


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("assertions", help="assertions mined from a run's labels: "
                       "`assertions suggest RUN`, `assertions report RUN`")
    actions = p.add_subparsers(dest="assertions_action", required=True, metavar="ACTION")
    p = actions.add_parser("suggest", help="mine assertions from the labels, keep the fewest "
                           "that catch enough failures, write RUN/assertions/assertions-v<N>.yaml")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--alpha", type=float, default=0.6, help="least share of human-failed "
                   "records the kept assertions must fail (default 0.6)")
    p.add_argument("--tau", type=float, default=0.25, help="most share of human-passed "
                   "records they may fail (default 0.25)")
    p.add_argument("--llm", action="store_true", help="the judge's model (the run's config) "
                   "proposes assertions too, from the failed records and their critiques")
    p.add_argument("--backend-url", help="override the run's backend base_url (for --llm)")
    p = actions.add_parser("report", help="what each assertion catches, and the set's "
                           "agreement with held-out labels")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--file", type=Path, help="an assertion file (default: the run's newest)")


def cmd_assertions(args: argparse.Namespace) -> int:
    from gristmill.assertions.suggest import report, suggest
    from gristmill.cli.flywheel import require_run_dir

    require_run_dir(args.run_dir)
    if args.assertions_action == "report":
        report(args.run_dir, args.file)
        return 0
    for name in ("alpha", "tau"):
        if not 0 <= getattr(args, name) <= 1:
            raise ConfigError(f"--{name} {getattr(args, name)}: a fraction between 0 and 1")
    proposer = None
    if args.llm:
        from functools import partial

        from gristmill.flywheel.assertion_llm import llm_candidates
        proposer = partial(llm_candidates, backend_url=args.backend_url)
    suggest(args.run_dir, args.alpha, args.tau, proposer=proposer)
    return 0


COMMANDS = {"assertions": cmd_assertions}
