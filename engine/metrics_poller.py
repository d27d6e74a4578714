"""Scraping each endpoint's `/metrics` (vLLM's Prometheus names) and setting the backend's
in-flight cap from them. A remote server cannot push its load, so this is a periodic scrape,
like Prometheus itself does; it stops the moment the run ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from backends.prometheus import parse_metrics

from .client import ModelClient
from .saturation import MetricsController, ServerLoad

log = logging.getLogger("gristmill.metrics")


def metrics_url(base_url: str) -> str:
    root = base_url[:-3] if base_url.endswith("/v1") else base_url
    return root.rstrip("/") + "/metrics"


async def _scrape(session: aiohttp.ClientSession, url: str) -> ServerLoad | None:
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                return None
            return ServerLoad.from_metrics(parse_metrics(await resp.text()))
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.debug("metrics scrape of %s failed: %s", url, exc)
        return None


async def poll_metrics(client: ModelClient, base_urls: list[str], interval_s: float,
                       ceiling: int, done: asyncio.Event) -> None:
    """Until `done`: scrape, decide each endpoint's cap, set their sum on the client."""
    per_endpoint = max(1, ceiling // len(base_urls))
    controllers = {url: MetricsController(per_endpoint) for url in base_urls}
    timeout = aiohttp.ClientTimeout(total=max(1.0, interval_s))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client.set_cap("metrics", sum(c.cap for c in controllers.values()))
        while not done.is_set():
            loads = await asyncio.gather(*(_scrape(session, metrics_url(u)) for u in base_urls))
            for url, load in zip(base_urls, loads):
                if load is not None:
                    outstanding = client.backend.outstanding(url)
                    controllers[url].next_cap(load, outstanding)
                    client.server_load[url] = load
            client.set_cap("metrics", sum(c.cap for c in controllers.values()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await done.wait()
