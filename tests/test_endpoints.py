"""Endpoint choice, ejection and return: the decisions as plain code, then against real mock
servers (one of them dead, then brought back on the same port)."""

from __future__ import annotations

import asyncio

import pytest

from gristmill.backends.openai_http.endpoints import (EjectionPolicy, Endpoint, EndpointSet,
                                                      choose, due_for_probe, record_failure,
                                                      record_success, reinstate, reject_probe)
from gristmill.backends.mock.process import MockServerProcess
from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.protocol import Request
from gristmill.backends.vllm.server import free_port
from gristmill.config.pipeline import BackendConfig
from gristmill.errors import ConnectionReset

POLICY = EjectionPolicy(eject_after=3, base_s=1.0, max_s=8.0)


def eps(*outstanding: int, cap: int = 100) -> list[Endpoint]:
    out = []
    for i, n in enumerate(outstanding):
        e = Endpoint(f"http://h{i}/v1", cap=cap)
        e.outstanding = n
        out.append(e)
    return out


def test_choose_least_outstanding_relative_to_each_cap():
    a, b, c = eps(5, 2, 3)
    assert choose([a, b, c]) is b
    a.cap, b.cap, c.cap = 8, 4, 32  # 5 of 8, 2 of 4, 3 of 32: c has the most room
    assert choose([a, b, c]) is c
    c.down = True
    b.ejected_until = 10.0
    assert choose([a, b, c]) is a
    a.down = True
    assert choose([a, b, c]) is None


def test_consecutive_failures_eject_with_doubling_backoff_and_success_resets():
    (e,) = eps(0)
    assert not record_failure(e, 0.0, POLICY, True) and not record_failure(e, 0.0, POLICY, True)
    record_success(e)  # not in a row any more
    assert [record_failure(e, 0.0, POLICY, True) for _ in range(3)] == [False, False, True]
    assert e.ejected_until == 1.0 and not e.in_rotation and e.state == "ejected"
    assert not record_failure(e, 0.5, POLICY, True)  # already out: no new deadline
    reject_probe(e, 1.0, POLICY)  # the probe found it still dead: twice as long
    assert e.ejected_until == 3.0
    reinstate(e)
    assert e.in_rotation and e.failures == 0
    for _ in range(3):
        record_failure(e, 10.0, POLICY, True)
    assert e.ejected_until == 10.0 + 4.0  # third ejection in a row
    for _ in range(5):
        reject_probe(e, 20.0, POLICY)
    assert e.ejected_until == 20.0 + 8.0  # capped at max_s


def test_the_last_endpoint_in_rotation_is_never_ejected():
    (e,) = eps(0)
    assert not any(record_failure(e, 0.0, POLICY, others_up=False) for _ in range(10))
    assert e.in_rotation and e.failures == 10


def test_due_for_probe_skips_restarting_servers_and_says_when_next():
    a, b, c, d = eps(0, 0, 0, 0)
    a.ejected_until, b.ejected_until, c.ejected_until = 1.0, 5.0, 0.5
    c.down = True  # the fleet restarts it and will say when it is healthy
    assert due_for_probe([a, b, c, d], 2.0) == ([a], 5.0)
    assert due_for_probe([d], 2.0) == ([], float("inf"))


@pytest.mark.virtual_clock
async def test_pick_waits_for_an_endpoint_to_come_back_then_gives_up():
    loop = asyncio.get_running_loop()
    a, b = eps(0, 0)
    endpoints = EndpointSet([a, b], POLICY, clock=loop.time)
    endpoints.mark_down(a.url)
    endpoints.mark_down(b.url)
    waiter = asyncio.create_task(endpoints.pick())
    await asyncio.sleep(5.0)
    assert not waiter.done()
    endpoints.mark_up(b.url)
    assert await waiter is b
    endpoints.mark_down(b.url)
    endpoints.down_wait_s = 3.0
    start = loop.time()
    with pytest.raises(ConnectionReset, match="no endpoint in rotation"):
        await endpoints.pick()
    assert loop.time() - start == pytest.approx(3.0)  # it waited exactly down_wait_s


def backend(*urls: str, **kw) -> OpenAIHTTPBackend:
    return OpenAIHTTPBackend("t", BackendConfig(base_urls=list(urls), model="mock", **kw))


async def ask(b: OpenAIHTTPBackend, i: int) -> str:
    """One request, retried on connection errors like the client's retry path does."""
    for _ in range(10):
        try:
            return (await b.complete(Request("mock", messages=[
                {"role": "user", "content": str(i)}]))).text
        except ConnectionReset:
            continue
    raise AssertionError("no answer after 10 attempts")


@pytest.mark.integration
async def test_dead_endpoint_is_ejected_then_probed_back(mock_server):
    dead_port = free_port()
    dead_url = f"http://127.0.0.1:{dead_port}/v1"
    b = backend(dead_url, mock_server.base_url)
    b.endpoints.policy = EjectionPolicy(eject_after=2, base_s=0.2, max_s=0.4)
    prober = asyncio.create_task(b.endpoints.probe_ejected())
    dead = b.endpoints.by_url(dead_url)
    try:
        mock_server.reset()
        assert all(await asyncio.gather(*(ask(b, i) for i in range(20))))
        assert dead.state == "ejected" and dead.failures >= 2
        assert mock_server.stats()["requests"] == 20  # all answered by the live one
        # started and stopped off the loop: a process start blocks for a while
        revived = await asyncio.to_thread(MockServerProcess(port=dead_port).start)
        try:
            while not dead.in_rotation:  # the probe runs when the backoff ends
                await asyncio.sleep(0.05)
            assert await asyncio.gather(*(ask(b, i) for i in range(20)))
            assert revived.stats()["requests"] > 0
        finally:
            await asyncio.to_thread(revived.stop)
    finally:
        prober.cancel()
        await asyncio.gather(prober, return_exceptions=True)
        await b.aclose()
    assert b.in_flight == 0 and prober.cancelled()
