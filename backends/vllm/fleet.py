"""A fleet of `vllm serve` processes for one backend: placement on GPUs, start, supervision,
stop.

    fleet = VLLMFleet.from_config("default", backend_config, log_dir=run_dir / "logs")
    fleet.base_urls                      # known before start: the ports are picked up front
    async with fleet:                    # starts every server at once, waits for /health
        await fleet.supervise(endpoints)   # restarts a server that dies, until cancelled

Placement is a plain function (`server_specs`), so the command lines and environments for a
GPU box are tested here. Each server runs in its own process group and logs to
`<log_dir>/vllm-<i>.log`; stopping signals the groups by their own ids, shielded from
cancellation, after success, an error or Ctrl-C alike. A server that dies is taken out of
the endpoint rotation (its in-flight requests fail with a connection error and the client's
retry path sends them to the others), started again on the same port, and put back once
healthy."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gristmill.capabilities import Endpoints
from gristmill.errors import FatalUpstream

from gristmill.backends.vllm.runtime import Runtime, ensure_runtime
from gristmill.backends.vllm.server import ServerDied, ServerSpec, VLLMServer, free_port

if TYPE_CHECKING:
    from gristmill.config.pipeline import BackendConfig
    from gristmill.config.fleet import FleetConfig

log = logging.getLogger("gristmill.fleet")


class FleetError(FatalUpstream):
    """The fleet could not start, or lost every server for good: the run stops (exit 3)."""


def server_specs(fleet: "FleetConfig", served_name: str) -> list[ServerSpec]:
    """One spec per server: its GPU group, the engine settings, the served model name."""
    return [ServerSpec(model=fleet.model or served_name, served_model_name=served_name,
                       dtype=fleet.dtype, max_model_len=fleet.max_model_len,
                       max_num_seqs=fleet.max_num_seqs,
                       max_num_batched_tokens=fleet.max_num_batched_tokens,
                       prefix_caching=fleet.prefix_caching, enforce_eager=fleet.enforce_eager,
                       devices=group, extra_args=tuple(fleet.extra_args), env=dict(fleet.env))
            for group in fleet.device_groups()]


def log_name(backend: str, index: int) -> str:
    return f"vllm-{index}.log" if backend == "default" else f"vllm-{backend}-{index}.log"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


BIND = "VLLM_CPU_OMP_THREADS_BIND"


def split_cpu_binding(specs: list[ServerSpec], runtime: Runtime) -> list[ServerSpec]:
    """CPU servers of one fleet bound to the same cores would spin against each other: when
    the runtime binds vLLM's threads to cores, each server gets its own share of them (a
    server whose spec sets its own binding keeps it)."""
    bound = runtime.env().get(BIND)
    if bound is None or len(specs) < 2:
        return specs
    cpus = bound.split(",")
    if len(cpus) < len(specs) or not all(cpu.isdigit() for cpu in cpus):  # ranges: the user's
        return specs
    share = len(cpus) // len(specs)
    return [spec if BIND in spec.env else
            replace(spec, env={**spec.env, BIND: ",".join(cpus[i * share:(i + 1) * share])})
            for i, spec in enumerate(specs)]


class VLLMFleet:
    def __init__(self, name: str, specs: list[ServerSpec], *, log_dir: Path | None = None,
                 startup_timeout_s: float = 900.0, max_restarts: int = 3,
                 runtime: Callable[[], Runtime] | None = None,
                 say: Callable[[str], None] = _stderr, host: str = "127.0.0.1") -> None:
        self.name = name
        self.specs = specs
        self.host = host  # where the servers listen (a cluster's node: its address)
        self.log_dir = log_dir
        self.startup_timeout_s = startup_timeout_s
        self.max_restarts = max_restarts
        self.say = say
        self._runtime = runtime or (lambda: ensure_runtime(say=say))
        self.ports = [free_port(host) for _ in specs]
        self.servers: list[VLLMServer] = []
        self.restarts = [0] * len(specs)  # successful restarts per server
        self.given_up: set[int] = set()

    @classmethod
    def from_config(cls, name: str, backend: "BackendConfig", *, log_dir: Path | None = None,
                    say: Callable[[str], None] = _stderr) -> "VLLMFleet":
        assert backend.fleet is not None
        return cls(name, server_specs(backend.fleet, backend.model), log_dir=log_dir,
                   startup_timeout_s=backend.fleet.startup_timeout_s,
                   max_restarts=backend.fleet.max_restarts, say=say)

    @property
    def base_urls(self) -> list[str]:
        return [f"http://{self.host}:{port}/v1" for port in self.ports]

    def pids(self) -> list[int]:
        """Process group ids of the servers started (each server leads its own group)."""
        return [s.pid for s in self.servers if s.pid is not None]

    # -- start and stop ------------------------------------------------------------------
    async def start(self) -> "VLLMFleet":
        runtime = await asyncio.to_thread(self._runtime)
        specs = split_cpu_binding(self.specs, runtime)
        self.servers = [
            VLLMServer(spec, runtime, host=self.host, port=port,
                       startup_timeout_s=self.startup_timeout_s,
                       log_path=self.log_dir / log_name(self.name, i) if self.log_dir else None)
            for i, (spec, port) in enumerate(zip(specs, self.ports))]
        self.say(f"{self.name}: starting {len(self.servers)} × vllm serve {self.specs[0].model}"
                 + (f" (logs in {self.log_dir})" if self.log_dir else ""))
        started = time.monotonic()
        try:
            async with asyncio.TaskGroup() as group:
                for server in self.servers:
                    group.create_task(server.start())
        except BaseExceptionGroup as failed:
            await self.stop()
            first = failed.exceptions[0]
            raise FleetError(f"{self.name}: a vllm serve did not start: {first}") from first
        except BaseException:  # cancelled (Ctrl-C): servers already healthy must go too
            await self.stop()
            raise
        self.say(f"{self.name}: {len(self.servers)} server(s) healthy in "
                 f"{time.monotonic() - started:.0f}s: {', '.join(self.base_urls)}")
        return self

    async def stop(self) -> None:
        """Stop every server (all at once; each stop is shielded and waits for its group)."""
        await asyncio.gather(*(server.stop() for server in self.servers))

    async def __aenter__(self) -> "VLLMFleet":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- supervision ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {"urls": self.base_urls, "restarts": sum(self.restarts),
                "given_up": sorted(self.given_up)}

    async def supervise(self, endpoints: Endpoints) -> None:
        """Restart servers that exit, until cancelled. Raises FleetError once no server is
        left."""
        async with asyncio.TaskGroup() as group:
            for index in range(len(self.servers)):
                group.create_task(self._watch(index, endpoints))

    async def _watch(self, index: int, endpoints: Endpoints) -> None:
        server = self.servers[index]
        while True:
            assert server.proc is not None
            await server.proc.wait()
            endpoints.mark_down(server.base_url)
            self.say(f"{self.name}: vllm serve {index} ({server.url}) exited with code "
                     f"{server.proc.returncode}; restarting it (log: {server.log_path})")
            log.warning("%s: server %d (pid %s) exited with code %s; restarting", self.name,
                        index, server.pid, server.proc.returncode)
            await server.stop()  # the rest of its process group
            if not await self._restart(index, server):
                return
            endpoints.mark_up(server.base_url)

    async def _restart(self, index: int, server: VLLMServer) -> bool:
        """Start it again, up to max_restarts attempts in a row; False once given up."""
        for attempt in range(1, self.max_restarts + 1):
            try:
                await server.start()
            except (ServerDied, TimeoutError, OSError) as exc:
                log.warning("%s: restart %d of server %d failed: %s", self.name, attempt,
                            index, exc)
                continue
            self.restarts[index] += 1
            self.say(f"{self.name}: vllm serve {index} healthy again at {server.url}")
            return True
        self.given_up.add(index)
        log.error("%s: gave up on server %d after %d failed restarts", self.name, index,
                  self.max_restarts)
        if len(self.given_up) == len(self.servers):
            raise FleetError(f"{self.name}: every vllm serve died and could not be restarted; "
                             f"see the logs in {self.log_dir}")
        return False
