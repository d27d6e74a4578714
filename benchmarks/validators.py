"""Streaming validators against final-only validation, with 20% bad answers.

    python -m benchmarks.validators [--n 300] [--bad-rate 0.2] [--repeats 3]

The mock server paces each stream (--tokens-per-s) and makes a fraction of answers bad
(refusals, loops, wrong language; 1000 tokens each, so stopping early shows). The same run is
made twice: validators stopping a bad stream as soon as it is recognised (`abort_early`), and
the same validators judging each answer only once complete. The server counts the tokens it
actually sent. Then the validators' own CPU is measured on the answers of the run.
Prints a table and writes benchmarks/results/validators.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import orjson

from gristmill.backends.mock.process import MockServerProcess
from benchmarks.common import Meter, machine, pin_to_cpu, print_table, write_json
from gristmill.config.load import validate_config
from gristmill.runs.event_loop import new_event_loop
from gristmill.runs.runner import RunOptions, run
import gristmill.validation.stage
from gristmill.validation import DEFAULT_STREAM, Context, build_stream, start_checks
from gristmill.validation.base import CompositeStreamCheck

SERVER = ["--bad-kinds", "refusal,loop,language", "--bad-tokens", "1000",
          "--output-tokens", "200-400", "--tokens-per-s", "1500", "--seed", "5"]


def config(url: str, seeds: Path, abort_early: bool, validators: bool = True) -> dict:
    return {"name": "validators", "seeds": {"path": str(seeds), "min_chars": 1, "dedup": False},
            "backends": {"default": {"base_url": url, "model": "mock", "max_in_flight": 32}},
            "stages": [{"name": "answer", "prompt": "{{ seed }}", "stream": True,
                        "sampling": {"max_tokens": 1200},
                        "validators": {"abort_early": abort_early, "max_regenerations": 0,
                                       "defaults": validators}}],
            "dedup": {"enabled": False}}


async def one_run(n: int, bad_rate: float, abort_early: bool, tmp: Path,
                  validators: bool = True) -> dict:
    seeds = tmp / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": f"Describe step {i} of milling flour."}) + "\n"
                             for i in range(n)))
    label = ("streaming validators" if abort_early else "final-only") if validators \
        else "no validators"
    label += f", {bad_rate:.0%} bad"
    with MockServerProcess("--bad-rate", str(bad_rate), *SERVER) as server:
        if (os.cpu_count() or 1) > 1 and server.proc is not None:
            os.sched_setaffinity(server.proc.pid, {1})
        run_dir = tmp / label.replace(" ", "-").replace(",", "").replace("%", "")
        with Meter() as meter:
            summary = await run(validate_config(config(server.base_url, seeds, abort_early,
                                                       validators)),
                                RunOptions(run_dir=run_dir, progress=False, cache=False))
        stats = await server.idle()
    accepted = [orjson.loads(x) for x in (run_dir / "output.jsonl").read_bytes().splitlines()]
    good_tokens = sum(r["usage"]["completion_tokens"] for r in accepted)
    return {"run": label, "requests": stats["requests"], "bad_answers": stats["bad_answers"],
            "rejected": summary["rejects"], "tokens_sent": stats["tokens_sent"],
            "bad_tokens_sent": stats["tokens_sent"] - good_tokens, "wall_s": meter.wall,
            "client_cpu_s": meter.cpu, "run_dir": str(run_dir)}


@contextmanager
def timing_validators() -> Iterator[list[float]]:
    """Thread CPU spent inside the validators (every streaming feed and finish, the final
    checks) while the block runs: the validators' own share of a run, measured directly
    rather than as the difference of two noisy runs."""
    spent = [0.0]
    targets = [(CompositeStreamCheck, "feed"), (CompositeStreamCheck, "finish"),
               (gristmill.validation.stage, "run_final"), (gristmill.validation.stage, "run_stream_on_text")]
    originals = [getattr(owner, name) for owner, name in targets]

    def timed(function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - start
        return call

    for (owner, name), original in zip(targets, originals):
        setattr(owner, name, timed(original))
    try:
        yield spent
    finally:
        for (owner, name), original in zip(targets, originals):
            setattr(owner, name, original)


def validator_cpu(run_dir: Path) -> dict:
    """CPU of the default streaming checks over every answer of a run, fed in 4-token chunks."""
    texts = [orjson.loads(x)["messages"][-1]["content"]
             for x in (run_dir / "output.jsonl").read_bytes().splitlines()]
    texts += [orjson.loads(x)["text"] for x in (run_dir / "rejects.jsonl").read_bytes().splitlines()]
    validators = build_stream(DEFAULT_STREAM)
    tokens = 0
    with Meter() as meter:
        for text in texts:
            check = start_checks(validators, Context(stage="answer"))
            words = text.split(" ")
            for i in range(0, len(words), 4):
                if check.feed(" ".join(words[i:i + 4]) + " ") is not None:
                    break
                tokens += 4
            check.finish()
    return {"tokens": tokens, "cpu_s": meter.cpu, "cpu_ms_per_1k_tokens": 1000 * meter.cpu / max(tokens, 1) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--bad-rate", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of good-answer runs "
                        "with and without validators, interleaved (the share is their median)")
    args = parser.parse_args()
    pin_to_cpu(0)
    tmp = Path(tempfile.mkdtemp(prefix="gm-validators-"))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        rows = [runner.run(one_run(args.n, args.bad_rate, early, tmp)) for early in (True, False)]
        # the validators' CPU share, measured two ways: timed inside the run, and as the
        # difference of the same good answers with and without them (pairs interleaved, so
        # a drift of the machine's speed hits both sides alike)
        pairs = []
        for _ in range(args.repeats):
            with timing_validators() as spent:
                checked = runner.run(one_run(args.n, 0.0, True, tmp))
            checked["validator_cpu_s"] = spent[0]
            pairs.append((checked, runner.run(one_run(args.n, 0.0, True, tmp, validators=False))))
        rows += [row for pair in pairs for row in pair]
    print_table(rows, [("run", "run", str), ("requests", "requests", str),
                       ("bad_answers", "bad answers", str), ("rejected", "rejected", str),
                       ("tokens_sent", "tokens sent", "{:,}".format),
                       ("bad_tokens_sent", "bad tokens sent", "{:,}".format),
                       ("wall_s", "wall s", "{:.1f}".format),
                       ("client_cpu_s", "client CPU s", "{:.2f}".format)])
    never = 1 - rows[0]["bad_tokens_sent"] / max(rows[1]["bad_tokens_sent"], 1)
    cpu = validator_cpu(Path(rows[0]["run_dir"]))
    shares = [1 - bare["client_cpu_s"] / checked["client_cpu_s"] for checked, bare in pairs]
    timeds = [checked["validator_cpu_s"] / checked["client_cpu_s"] for checked, _ in pairs]
    share, timed = statistics.median(shares), statistics.median(timeds)
    print(f"bad streams' tokens never generated: {never:.1%} (target >= 80%)")
    each = lambda values: ", ".join(f"{v:.1%}" for v in values)  # noqa: E731
    print(f"validator CPU: {cpu['cpu_ms_per_1k_tokens']:.2f} ms per 1k tokens fed 4 tokens at a "
          f"time (worst case); in a run (median of {len(pairs)}): {timed:.1%} of the client CPU "
          f"timed inside the validators ({each(timeds)}), {share:.1%} as the difference of the "
          f"runs with and without them ({each(shares)}) (target <= 10%)")
    write_json("validators", {"machine": machine(), "rows": rows, "never_generated": never,
                              "validator_cpu": cpu, "validator_share_of_client_cpu": share,
                              "validator_share_timed": timed, "shares": shares,
                              "shares_timed": timeds,
                              "time": time.strftime("%Y-%m-%d %H:%M:%S")})


if __name__ == "__main__":
    main()
