"""Scraping each endpoint's `/metrics` (vLLM's Prometheus names) and setting each endpoint's
in-flight cap from them; the backend's cap is their sum. A remote server cannot push its load,
so this is a periodic scrape, like Prometheus itself does; the run cancels it when it ends."""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

import aiohttp

from gristmill.backends.openai_http.prometheus import parse_metrics
from gristmill.capabilities import Endpoint, Endpoints
from gristmill.scheduling.client import ModelClient
from gristmill.scheduling.saturation import MetricsController, ServerLoad

log = logging.getLogger("gristmill.metrics")


def metrics_url(base_url: str) -> str:
    root = base_url[:-3] if base_url.endswith("/v1") else base_url
    return root.rstrip("/") + "/metrics"


async def _scrape(session: aiohttp.ClientSession, url: str) -> ServerLoad | None:
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                return None
            # a page in a broken charset is still read: a scrape never ends the run
            return ServerLoad.from_metrics(parse_metrics(await resp.text(errors="replace")))
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.debug("metrics scrape of %s failed: %s", url, exc)
        return None


def fleet_cap(endpoints: Sequence[Endpoint]) -> int:
    """The backend's cap: the sum of the caps of the endpoints in rotation."""
    return max(1, sum(e.cap for e in endpoints if e.in_rotation))


async def poll_metrics(client: ModelClient, endpoints: Endpoints, interval_s: float,
                       ceiling: int) -> None:
    """Until cancelled: scrape each endpoint, decide its own cap (endpoint choice fills each
    up to its cap), and set the sum over the endpoints in rotation as the backend's cap."""
    members = endpoints.endpoints
    per_endpoint = max(1, ceiling // len(members))
    controllers = {e.url: MetricsController(per_endpoint) for e in members}
    for e in members:
        e.cap = controllers[e.url].cap
    timeout = aiohttp.ClientTimeout(total=max(1.0, interval_s))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client.set_cap("metrics", fleet_cap(members))
        while True:
            loads = await asyncio.gather(*(_scrape(session, metrics_url(e.url)) for e in members))
            for e, load in zip(members, loads):
                if load is not None and e.in_rotation:
                    e.cap = controllers[e.url].next_cap(load, e.outstanding)
                client.server_load[e.url] = load
            client.set_cap("metrics", fleet_cap(members))
            await asyncio.sleep(interval_s)
