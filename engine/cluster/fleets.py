"""`kind: vllm` backends on a cluster: one `vllm serve` per GPU group, placed on the cluster's
nodes by a Ray placement group (a bundle of `gpus_per_server` GPUs per server, spread over the
nodes), each started and supervised by a small actor in its bundle (gristmill's own fleet of
one server, listening on its node's address, restarted when it dies). Every shard gets the
full list of base URLs, as a `kind: openai` backend that scrapes their /metrics.

Servers: `fleet.servers` if given, else all the cluster's GPUs in groups of `gpus_per_server`.
The test hooks of the fleet (GRISTMILL_VLLM_COMMAND, GRISTMILL_MOCK_ARGS) and the vLLM runtime
home reach the server actors through their runtime environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

from gristmill.config.pipeline import PipelineConfig
from gristmill.errors import ConfigError

PASSED_ENV = ("GRISTMILL_VLLM_COMMAND", "GRISTMILL_MOCK_ARGS", "GRISTMILL_VLLM_HOME")


class NoEndpoints:
    """A server's host has no balancer to tell: the shards' clients eject and probe it."""

    def mark_down(self, url: str) -> None:
        pass

    def mark_up(self, url: str) -> None:
        pass


class ServerHost:
    """One server of a cluster's fleet, in its placement-group bundle."""

    def __init__(self) -> None:
        self.fleet: Any = None
        self._supervising: asyncio.Task[None] | None = None

    async def start(self, name: str, spec: Any, log_dir: str, startup_timeout_s: float,
                    max_restarts: int) -> str:
        import ray

        from gristmill.backends.vllm.fleet import VLLMFleet

        gpus = tuple(int(g) for g in ray.get_gpu_ids())  # what Ray gave this bundle
        self.fleet = VLLMFleet(name, [replace(spec, devices=gpus)], log_dir=Path(log_dir),
                               startup_timeout_s=startup_timeout_s, max_restarts=max_restarts,
                               host=ray.util.get_node_ip_address())
        await self.fleet.start()
        return str(self.fleet.base_urls[0])

    async def supervise(self) -> None:
        """Until `stop`; raises FleetError once the server could not be restarted."""
        self._supervising = asyncio.current_task()
        try:
            await self.fleet.supervise(NoEndpoints())
        except asyncio.CancelledError:
            if self.fleet is None:  # stopped on purpose: not an error for the driver
                return
            raise

    async def stop(self) -> None:
        """Supervision first (it would restart the server it sees exit), then the server."""
        fleet, self.fleet = self.fleet, None
        if self._supervising is not None:
            self._supervising.cancel()
        if fleet is not None:
            await fleet.stop()


def fleet_backends(config: PipelineConfig) -> list[str]:
    return [name for name, b in config.backends.items() if b.kind == "vllm"]


def servers_wanted(config: PipelineConfig, name: str, cluster_gpus: float) -> int:
    fleet = config.backends[name].fleet
    assert fleet is not None
    if fleet.gpus:
        raise ConfigError(f"backends.{name}.fleet.gpus names one machine's GPUs; under --ray "
                          "leave it out: the fleet takes the cluster's GPUs, gpus_per_server "
                          "each, or fleet.servers of them")
    servers = fleet.servers or int(cluster_gpus // fleet.gpus_per_server)
    if servers < 1:
        raise ConfigError(f"backends.{name}: the cluster has {cluster_gpus:g} GPU(s), fewer "
                          f"than gpus_per_server={fleet.gpus_per_server}; set fleet.servers to "
                          "run servers on CPUs")
    return servers


@contextlib.asynccontextmanager
async def cluster_fleets(ray: Any, config: PipelineConfig, log_dir: Path,
                         say: Any) -> AsyncIterator[tuple[dict[str, list[str]], list[Any]]]:
    """Start every fleet backend's servers; yields their base URLs by backend and the
    supervision of each (to await beside the shards). Stops them all on the way out."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from gristmill.backends.vllm.fleet import server_specs

    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    host_class = ray.remote(num_cpus=0)(ServerHost)
    groups, hosts, urls = [], [], {}
    try:
        for name in fleet_backends(config):
            backend = config.backends[name]
            fleet = backend.fleet
            assert fleet is not None
            cluster_gpus = ray.cluster_resources().get("GPU", 0)
            servers = servers_wanted(config, name, cluster_gpus)
            uses_gpus = cluster_gpus > 0  # else servers on CPUs (fleet.servers of them)
            bundle = {"GPU": fleet.gpus_per_server} if uses_gpus else {"CPU": 1}
            group = placement_group([bundle] * servers, strategy="SPREAD")
            groups.append(group)
            await asyncio.wait_for(group.ready(), fleet.startup_timeout_s)
            spec = server_specs(fleet, backend.model)[0]
            ours = [host_class.options(
                num_gpus=fleet.gpus_per_server if uses_gpus else 0, runtime_env={"env_vars": env},
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    group, placement_group_bundle_index=i)).remote() for i in range(servers)]
            hosts += ours
            say(f"{name}: starting {servers} × vllm serve {spec.model} on the cluster")
            urls[name] = list(await asyncio.gather(*(
                host.start.remote(f"{name}-{i}", spec, str(log_dir), fleet.startup_timeout_s,
                                  fleet.max_restarts) for i, host in enumerate(ours))))
            say(f"{name}: {servers} server(s) healthy: {', '.join(urls[name])}")
        yield urls, [host.supervise.remote() for host in hosts]
    finally:
        await asyncio.shield(asyncio.gather(*(host.stop.remote() for host in hosts),
                                            return_exceptions=True))
        for host in hosts:
            ray.kill(host, no_restart=True)
        for group in groups:
            remove_placement_group(group)


def served_by(data: dict[str, Any], urls: dict[str, list[str]]) -> dict[str, Any]:
    """A dumped config whose fleet backends send to the cluster's servers."""
    backends = dict(data["backends"])
    for name, base_urls in urls.items():
        backends[name] = {**backends[name], "kind": "openai", "base_urls": base_urls,
                          "fleet": None, "scrape_metrics": True}
    return {**data, "backends": backends}
