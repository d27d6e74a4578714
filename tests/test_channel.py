import asyncio

import pytest

from gristmill.flows.channel import Channel, EndOfStream
from tests.scripted import assert_settled

pytestmark = pytest.mark.engine_core


async def test_send_waits_while_full_and_end_travels_after_items():
    ch: Channel[int] = Channel(2)
    await ch.send(1)
    await ch.send(2)
    blocked = asyncio.create_task(ch.send(3))
    await asyncio.sleep(0)
    assert not blocked.done() and len(ch) == 2
    assert await ch.receive() == 1
    await asyncio.wait_for(blocked, 1)
    ch.close_producer()
    assert [x async for x in ch] == [2, 3]
    with pytest.raises(EndOfStream):
        await ch.receive()
    await assert_settled()


async def test_end_reaches_every_waiting_receiver_only_after_all_producers_close():
    ch: Channel[int] = Channel(1, producers=2)
    receivers = [asyncio.create_task(ch.receive()) for _ in range(3)]
    await asyncio.sleep(0)
    ch.close_producer()
    await asyncio.sleep(0)
    assert not any(r.done() for r in receivers)
    ch.close_producer()
    for r in receivers:
        with pytest.raises(EndOfStream):
            await asyncio.wait_for(r, 1)
    await assert_settled()


async def test_cancelled_receiver_does_not_swallow_an_item():
    ch: Channel[int] = Channel(4)
    a = asyncio.create_task(ch.receive())
    b = asyncio.create_task(ch.receive())
    await asyncio.sleep(0)
    await ch.send(7)  # wakes a...
    a.cancel()  # ...which is cancelled before it runs: b must get the item
    assert await asyncio.wait_for(b, 1) == 7
    with pytest.raises(asyncio.CancelledError):
        await a
    assert ch.statistics()["waiting_receivers"] == 0
    await assert_settled()


async def test_send_says_whether_it_woke_a_waiting_receiver():
    ch: Channel[int] = Channel(4)
    assert await ch.send(1) is False  # nobody waiting: queued only
    assert await ch.receive() == 1
    receiver = asyncio.create_task(ch.receive())
    await asyncio.sleep(0)
    assert await ch.send(2) is True
    assert await asyncio.wait_for(receiver, 1) == 2
    await assert_settled()
