"""One managed `vllm serve` process: its command line and environment (plain functions, so
GPU placement is testable here), start, wait until healthy, logs to a file, stop.

    async with VLLMServer(ServerSpec(model="/models/x"), runtime, log_path=...) as server:
        ... server.base_url ...           # http://127.0.0.1:<port>/v1

The process runs in its own session (process group): stopping it signals the group, so the
engine core processes vLLM forks go with it. `stop()` is safe to call twice and is shielded
from cancellation, so a Ctrl-C never leaves a server behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

from gristmill.backends.vllm.die_with_parent import die_with_parent
from gristmill.backends.vllm.runtime import Runtime


@dataclass(frozen=True)
class ServerSpec:
    """What one server serves and how. `devices` become CUDA_VISIBLE_DEVICES; several devices
    mean one tensor-parallel group."""

    model: str
    served_model_name: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    prefix_caching: bool | None = None
    enforce_eager: bool = False
    devices: tuple[int, ...] = ()
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def serve_args(spec: ServerSpec, host: str, port: int) -> list[str]:
    """The arguments after `vllm`."""
    return ["serve", spec.model, "--host", host, "--port", str(port), *engine_args(spec)]


def engine_args(spec: ServerSpec) -> list[str]:
    """The engine's arguments, shared by `vllm serve` and `vllm run-batch`."""
    args = ["--dtype", spec.dtype]
    if spec.served_model_name:
        args += ["--served-model-name", spec.served_model_name]
    for flag, value in (("--max-model-len", spec.max_model_len),
                        ("--max-num-seqs", spec.max_num_seqs),
                        ("--max-num-batched-tokens", spec.max_num_batched_tokens)):
        if value is not None:
            args += [flag, str(value)]
    if spec.prefix_caching is not None:
        args.append("--enable-prefix-caching" if spec.prefix_caching
                    else "--no-enable-prefix-caching")
    if spec.enforce_eager:
        args.append("--enforce-eager")
    if len(spec.devices) > 1:
        args += ["--tensor-parallel-size", str(len(spec.devices))]
    return args + list(spec.extra_args)


def serve_env(spec: ServerSpec, base: dict[str, str]) -> dict[str, str]:
    env = {**base, **spec.env}
    if spec.devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in spec.devices)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerDied(RuntimeError):
    pass


class VLLMServer:
    def __init__(self, spec: ServerSpec, runtime: Runtime, *, host: str = "127.0.0.1",
                 port: int | None = None, log_path: Path | None = None,
                 startup_timeout_s: float = 600.0) -> None:
        self.spec = spec
        self.runtime = runtime
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._stopped = False  # the group is gone: never signal its (reusable) id again

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        return [*self.runtime.vllm, *serve_args(self.spec, self.host, self.port)]

    async def start(self) -> "VLLMServer":
        """Start the process (again, after it died or was stopped) and wait until healthy."""
        self._stopped = False
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *die_with_parent(self.command(), str(self.runtime.python)),
            env=serve_env(self.spec, self.runtime.env()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log or asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
        try:
            await self._wait_healthy()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _wait_healthy(self) -> None:
        """Probe /health until it answers 200, the process exits, or time runs out (a
        starting server cannot announce readiness, so this is the one place that probes)."""
        assert self.proc is not None
        exited = asyncio.ensure_future(self.proc.wait())
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                while time.monotonic() < deadline:
                    if await self._healthy(session):
                        return
                    await asyncio.wait([exited], timeout=0.5)
                    if exited.done():
                        raise ServerDied(f"vllm serve exited with code {exited.result()} "
                                         f"before it was healthy; see {self.log_path}")
        finally:
            exited.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exited
        raise TimeoutError(f"vllm serve not healthy after {self.startup_timeout_s:.0f} s; "
                           f"see {self.log_path}")

    async def _healthy(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self.url + "/health") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the process group, SIGKILL it if it lingers; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if not self._stopped:
            await asyncio.shield(self._terminate(proc, timeout_s))
            self._stopped = True
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    async def _terminate(self, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
                break
            except TimeoutError:
                continue
        # the group may outlive its leader (engine core children): make sure it is gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def __aenter__(self) -> "VLLMServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
