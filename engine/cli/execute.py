"""Running a config to its end from the command line: in this process or on a cluster, a
model server started first for the demo, signals handled, the summary printed, the exit code
the stop reason's."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gristmill.cli.cluster import cluster_run
from gristmill.errors import RunStopped
from gristmill.runs.outcome import STOP_REASONS


def execute(config: Any, args: argparse.Namespace, server: Any = None,
             say: Any = None) -> int:
    """Run `config`; with `server` (a VLLMServer), start it first, point every backend at it
    and stop it afterwards, whatever happens."""
    import asyncio
    import signal

    from gristmill.config.load import with_cli_overrides
    from gristmill.runs.event_loop import new_event_loop
    from gristmill.runs.runner import RunOptions, run
    from gristmill.runs.signals import GracefulStop

    stop = GracefulStop()
    options = RunOptions(run_dir=args.run_dir, limit=args.limit,
                         target_records=args.target_records,
                         progress=False if args.no_progress else None, on_start=stop.install,
                         cache=not args.no_cache, force=args.force,
                         metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                         metrics_linger_s=args.metrics_linger, budget_usd=args.budget_usd)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            if server is not None:
                say(f"starting vllm serve (log: {server.log_path})")
                signum = runner.run(start_cancellable(server))
                if signum is not None:
                    print("demo: stopped while the model server was starting", file=sys.stderr)
                    return 128 + signum
                say(f"model server healthy at {server.base_url}")
                config = with_cli_overrides(config, backend_url=server.base_url)
            on_ray = cluster_run(config, args, options)
            summary = runner.run(run(config, options) if on_ray is None
                                 else run_on_cluster(on_ray, stop))
        except RunStopped as error:  # the summary is on disk; the cause is one line
            print(f"gristmill: {error}\nto continue once fixed: gristmill resume {stop.run_dir or 'RUN'}",
                  file=sys.stderr)
            return STOP_REASONS[error.stop_reason][1]
        except asyncio.CancelledError:
            summary = None
        except KeyboardInterrupt:  # Ctrl-C before the run installed its handlers
            summary = None
            stop.signals.append(signal.SIGINT)
        finally:
            if server is not None:
                runner.run(server.stop())
    print_summary(summary, stop)
    return stop.exit_code if stop.signals else 0


async def run_on_cluster(driver: Any, stop: Any) -> dict[str, Any]:
    """A run on Ray: the driver handles Ctrl-C and SIGTERM as a single process does."""
    stop.install(driver)
    return await driver.execute()


async def start_cancellable(server: Any) -> int | None:
    """Start `server`; the number of the signal (SIGINT, SIGTERM) that came first, if one
    did (the server is stopped then)."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await server.start()
    except asyncio.CancelledError:
        if not received:
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return received[0] if received else None


def print_summary(summary: dict[str, Any] | None, stop: Any) -> None:
    if summary is None:
        where = stop.run_dir or "RUN"
        print(f"run aborted; to continue: gristmill resume {where}", file=sys.stderr)
        return
    if summary.get("resumed_records"):
        print(f"resumed: {summary['resumed_records']:,} records were already written")
    print(f"records {summary['records']:,} · rejects {summary['rejects']:,} · seeds "
          f"{summary['seeds']:,} · tokens {summary['tokens']:,} · {summary['elapsed_s']:.1f}s · "
          f"{summary['records_per_s']:.1f} records/s · {summary['tokens_per_s']:,.0f} tok/s")
    for reason, count in summary["rejects_by_reason"].items():
        print(f"  rejected {count:,} × {reason}")
    if "dedup" in summary:
        d = summary["dedup"]
        print(f"dataset.jsonl: {d.get('kept', 0):,} records after removing "
              f"{d.get('exact_duplicates', 0):,} exact and {d.get('near_duplicates', 0):,} "
              "near duplicates")
    if "target" in summary:
        t = summary["target"]
        print(f"target {t['records']:,} records: " + (
            "reached" if t["reached"] else "not reached (the seeds ran out)") +
            f"; dataset.jsonl holds {t['dataset']:,}")
    if "judge" in summary:
        j = summary["judge"]
        print(f"judge: {j['judged']:,} judged · {j['passed']:,} passed · {j['failed']:,} failed"
              + "".join(f" · {k} {v:,}" for k, v in j["failed_by_criterion"].items()))
    validation = summary.get("validation", {})
    if validation.get("rejected_by_validator"):
        print("  validators rejected: " + ", ".join(
            f"{k} {v:,}" for k, v in validation["rejected_by_validator"].items()) +
            f" · streams stopped early {validation['streams_aborted']:,} · ~"
            f"{validation['tokens_saved_estimate']:,} tokens not generated")
    print(f"run directory: {summary['run_dir']}")
    if stop.signals:
        print(f"stopped early by signal; to continue: gristmill resume {summary['run_dir']}",
              file=sys.stderr)

