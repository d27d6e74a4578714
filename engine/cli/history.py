"""`gristmill history RUN [--diff A B] [--compare OLD_RUN]`: the configs a run ran with, and the
prompt delta between two of them (implementation in engine/runs/history.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("history", help="the config versions a run ran with (RUN/history/v<N>/) "
                       "and the prompt delta between two")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--diff", nargs=2, type=_version, metavar=("A", "B"), help="unified diff of "
                   "the config and skill files from version A to B (e.g. --diff 1 2)")
    p.add_argument("--compare", type=Path, metavar="OLD_RUN", help="unified diff from OLD_RUN's "
                   "newest version to this run's newest")


def _version(text: str) -> int:
    number = text.removeprefix("v")
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give a version number, e.g. 2 or v2")
    return int(number)


def cmd_history(args: argparse.Namespace) -> int:
    from gristmill.runs.history import listing, prompt_delta

    if args.compare is not None:
        print(prompt_delta(args.compare, args.run_dir) or "no difference")
    elif args.diff is not None:
        print(prompt_delta(args.run_dir, old=args.diff[0], new=args.diff[1]) or "no difference")
    else:
        lines = listing(args.run_dir)
        print("\n".join(lines) if lines else f"{args.run_dir}: no history/v<N>/")
    return 0


COMMANDS = {"history": cmd_history}
