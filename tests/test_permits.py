"""The permit decision, tested as plain synchronous code with a fake clock (no event loop),
then the pool's waiting and waking on the virtual-clock loop."""

import asyncio

import pytest

from gristmill.scheduling.aimd import AIMD
from gristmill.scheduling.window import SlidingWindow
from tests.scripted import assert_settled, make_pool


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cap_limits_grants_and_release_frees_a_slot():
    pool = make_pool(2, clock=Clock())
    a, b = pool.grant(0, 0.0), pool.grant(0, 0.0)
    waiter = pool.enqueue(priority=0, tokens=0)
    assert pool.grant_ready(0.0) == ([], float("inf"))  # waits for a release, not a time
    pool.in_flight -= 1  # what release() does before deciding
    granted, _ = pool.grant_ready(0.0)
    assert granted == [waiter] and pool.in_flight == 2
    assert a is not b


def test_deeper_stage_first_then_fifo():
    pool = make_pool(1, clock=Clock())
    pool.grant(0, 0.0)
    shallow1 = pool.enqueue(priority=0, tokens=0)
    deep = pool.enqueue(priority=2, tokens=0)
    shallow2 = pool.enqueue(priority=0, tokens=0)
    order = []
    for _ in range(3):
        pool.in_flight -= 1
        granted, _ = pool.grant_ready(0.0)
        order += granted
    assert order == [deep, shallow1, shallow2]


def test_rpm_window_reports_when_it_reopens():
    clock = Clock()
    pool = make_pool(100, rpm=2, window_s=10.0, margin_s=0.0, clock=clock)
    pool.stamp(pool.grant(0, 0.0), 0.0)
    pool.stamp(pool.grant(0, 4.0), 4.0)
    pool.enqueue(0, 0)
    granted, wake_at = pool.grant_ready(5.0)
    assert granted == [] and wake_at == pytest.approx(10.0)
    granted, _ = pool.grant_ready(10.0)
    assert len(granted) == 1


def test_window_counts_a_grant_from_its_send_not_its_grant():
    # A starved loop sends the first burst half a second late: counted from the grants, the
    # second burst would be sent 1 s after them and arrive in the same server window.
    pool = make_pool(100, rpm=2, window_s=1.0, margin_s=0.0, clock=Clock())
    first = [pool.grant(0, 0.0), pool.grant(0, 0.0)]
    pool.enqueue(0, 0)
    assert pool.grant_ready(1.0) == ([], float("inf"))  # unsent grants never expire
    for permit in first:
        assert pool.stamp(permit, 0.5)
    granted, wake_at = pool.grant_ready(1.0)
    assert granted == [] and wake_at == pytest.approx(1.5)
    granted, _ = pool.grant_ready(1.5)
    assert len(granted) == 1


def test_a_grant_never_sent_counts_from_its_release():
    clock = Clock()
    pool = make_pool(100, rpm=1, window_s=1.0, margin_s=0.0, clock=clock)
    permit = pool.grant(0, 0.0)
    clock.now = 0.3
    pool.release(permit)  # failed before it was sent (or the backend never said)
    pool.enqueue(0, 0)
    assert pool.grant_ready(1.0)[1] == pytest.approx(1.3)
    pool.stamp(permit, 2.0)  # a late report changes nothing
    assert len(pool.grant_ready(1.3)[0]) == 1


def test_no_window_no_entries():
    pool = make_pool(4, clock=Clock())
    permit = pool.grant(10, 0.0)
    assert permit.request_entry is None and permit.token_entry is None
    assert not pool.stamp(permit, 0.0)


def test_token_estimate_corrected_while_pending():
    window = SlidingWindow(100, 1.0)
    entry = window.add(80)
    assert window.wait_time(30, 0.0) == float("inf")  # only the send can tell when
    window.correct(entry, 20, 0.1)
    assert window.wait_time(30, 0.1) == 0.0
    window.stamp(entry, 0.2)
    assert window.total == 20 and window.pending == 0 and len(window) == 1
    assert window.wait_time(90, 0.3) == pytest.approx(0.9)
    assert window.wait_time(90, 1.3) == 0.0 and window.total == 0


def test_tpm_counts_estimates_and_corrects_to_actual_usage():
    clock = Clock()
    pool = make_pool(100, tpm=1000, window_s=60.0, margin_s=0.0, clock=clock)
    permit = pool.grant(900, 0.0)
    assert pool.delay_for(200, 1.0) > 0  # 900 + 200 > 1000
    pool.release(permit, actual_tokens=300)
    assert pool.tokens.total == 300
    assert pool.delay_for(200, 1.0) == 0.0


def test_oversize_request_is_admitted_into_an_empty_window():
    window = SlidingWindow(100, 60.0)
    assert window.wait_time(500, 0.0) == 0.0
    window.stamp(window.add(500), 0.0)
    assert window.wait_time(1, 1.0) == pytest.approx(59.0)


def test_pause_blocks_until_its_end():
    clock = Clock()
    pool = make_pool(10, clock=clock)
    pool.pause(3.0)
    assert pool.delay_for(0, 0.0) == pytest.approx(3.0)
    assert pool.delay_for(0, 3.0) == 0.0


def test_cap_cannot_go_below_one():
    pool = make_pool(4, clock=Clock())
    pool._cap = 4
    pool.in_flight = 0
    pool.cap = 0
    assert pool.cap == 1


def test_aimd_halves_once_per_round_trip_and_regrows():
    aimd = AIMD(ceiling=64)
    assert aimd.on_overload(granted_at=1.0, now=2.0) == 32
    # a request granted before the cut reports overload: caused by the old cap, ignored
    assert aimd.on_overload(granted_at=1.5, now=2.1) == 32
    assert aimd.on_overload(granted_at=2.5, now=3.0) == 16
    for _ in range(16 * 10):
        aimd.on_success()
    assert 16 < aimd.cap <= 64
    for _ in range(100_000):
        aimd.on_success()
    assert aimd.cap == 64


@pytest.mark.engine_core
async def test_waiters_sleep_until_a_release_wakes_them():
    pool = make_pool(1)
    first = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done() and pool.waiting == 1
    pool.release(first)
    second = await asyncio.wait_for(waiter, 1)
    pool.release(second)
    assert pool.in_flight == 0 and pool.waiting == 0
    await assert_settled()


@pytest.mark.engine_core
async def test_cancelled_waiter_leaves_no_trace_and_granted_cancel_returns_permit():
    pool = make_pool(1)
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.waiting == 0
    # granted and cancelled before it could run: the permit must come back
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    pool.release(held)  # grants to the waiter...
    waiter.cancel()  # ...which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.in_flight == 0 and pool.waiting == 0
    await assert_settled()


@pytest.mark.virtual_clock
async def test_a_send_wakes_waiters_blocked_on_unsent_grants():
    pool = make_pool(10, rpm=1, window_s=0.2, margin_s=0.0)
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.3)  # far past the window: the grant is unsent, so it still counts
    assert not waiter.done() and pool._timer is None
    loop = asyncio.get_running_loop()
    pool.sent(held)  # now its expiry is known: a timer wakes the waiter one window later
    permit = await asyncio.wait_for(waiter, 2)
    assert loop.time() == pytest.approx(0.3 + 0.2)
    pool.release(held)
    pool.release(permit)
    assert pool.in_flight == 0 and pool.waiting == 0
    pool.close()
    await assert_settled()


@pytest.mark.virtual_clock
async def test_rate_window_wakes_waiter_by_timer_not_polling():
    pool = make_pool(10, rpm=1, window_s=0.2, margin_s=0.0)
    permit = await pool.acquire()
    pool.release(permit)
    loop = asyncio.get_running_loop()
    start, jumps = loop.time(), loop.jumps
    permit = await asyncio.wait_for(pool.acquire(), 2)
    assert loop.time() - start == pytest.approx(0.2)  # exactly when the window reopens...
    assert loop.jumps - jumps == 1  # ...woken by one timer, not by polling
    pool.release(permit)
    pool.close()
    await assert_settled()
