"""Why gristmill replaces asyncio-throttle: CPU spent waiting at a rate limit.

    python -m benchmarks.rate_limiter [--waiters 1000] [--rate 250]

Many coroutines want to start work under one rate limit (R per second). asyncio-throttle makes
every blocked coroutine wake every 10 ms to re-check; gristmill's PermitPool keeps waiters on
futures and wakes exactly the next one, by one timer, when the window reopens. Same work, same
limit, same loop: CPU seconds, wall time and wake-ups (loop iterations) are compared.
Prints a table and writes benchmarks/results/rate_limiter.json."""

from __future__ import annotations

import argparse
import asyncio
import time

from asyncio_throttle import Throttler

from benchmarks.common import Meter, machine, print_table, write_json
from gristmill.runs.event_loop import new_event_loop
from gristmill.scheduling.permits import PermitPool


async def with_throttle(n: int, rate: int) -> int:
    throttler = Throttler(rate_limit=rate, period=1.0)
    done = 0

    async def one() -> None:
        nonlocal done
        async with throttler:
            done += 1
    await asyncio.gather(*(one() for _ in range(n)))
    return done


async def with_permits(n: int, rate: int) -> int:
    pool = PermitPool(n, rpm=rate, window_s=1.0, margin_s=0.0)
    done = 0

    async def one() -> None:
        nonlocal done
        permit = await pool.acquire()
        done += 1
        pool.release(permit)
    await asyncio.gather(*(one() for _ in range(n)))
    pool.close()
    return done


def measure(fn, n: int, rate: int) -> dict:
    loop = new_event_loop(use_uvloop=False)
    ticks = 0
    original = loop._run_once  # count loop iterations: each is a wake-up of something

    def counting() -> None:
        nonlocal ticks
        ticks += 1
        original()
    loop._run_once = counting
    try:
        with Meter() as meter:
            done = loop.run_until_complete(fn(n, rate))
    finally:
        loop.close()
    return {"done": done, "wall_s": meter.wall, "cpu_s": meter.cpu, "loop_iterations": ticks}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=250)
    args = parser.parse_args()
    rows = []
    for name, fn in (("asyncio-throttle", with_throttle), ("gristmill PermitPool", with_permits)):
        row = measure(fn, args.waiters, args.rate)
        row.update(limiter=name, waiters=args.waiters, rate=args.rate)
        rows.append(row)
    print_table(rows, [("limiter", "limiter", str), ("waiters", "waiters", str),
                       ("rate", "per s", str), ("wall_s", "wall s", "{:.2f}".format),
                       ("cpu_s", "CPU s", "{:.3f}".format),
                       ("loop_iterations", "loop wake-ups", "{:,}".format)])
    ratio = rows[0]["cpu_s"] / max(rows[1]["cpu_s"], 1e-9)
    print(f"asyncio-throttle uses {ratio:.0f}x the CPU of PermitPool for the same work")
    print(f"wrote {write_json('rate_limiter', {'machine': machine(), 'rows': rows, 'cpu_ratio': ratio, 'time': time.strftime('%Y-%m-%d %H:%M:%S')})}")


if __name__ == "__main__":
    main()
