"""A `kind: vllm` backend in batch mode: each sealed file runs through `vllm run-batch`,
which reads and writes the OpenAI batch format, instead of through a server. One file at a
time (each run loads the model: on one GPU box two would fight for its memory). A file whose
run finished is marked by a `.ran` file beside its output, so a session that starts after a
crash reads it instead of running it again; an unfinished run starts over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Callable

from gristmill.config.pipeline import BackendConfig
from gristmill.errors import FatalUpstream

from gristmill.backends.openai_batch.ledger import FileEntry
from gristmill.backends.vllm.die_with_parent import die_with_parent
from gristmill.backends.vllm.fleet import server_specs
from gristmill.backends.vllm.runtime import Runtime, ensure_runtime
from gristmill.backends.vllm.server import engine_args, serve_env


class VLLMRunBatch:
    def __init__(self, name: str, config: BackendConfig, log_path: Path,
                 runtime: Callable[[], Runtime] | None = None) -> None:
        assert config.fleet is not None
        self.name = name
        self.spec = server_specs(config.fleet, config.model)[0]  # the first device group
        self.log_path = log_path
        self._runtime = runtime or ensure_runtime
        self._one_at_a_time = asyncio.Lock()

    async def run(self, entry: FileEntry, path: Path, resumed: bool) -> list[Path]:
        out, ran = path.with_name(path.name + ".out"), path.with_name(path.name + ".ran")
        if resumed and ran.exists():
            return [out]
        async with self._one_at_a_time:
            runtime = await asyncio.to_thread(self._runtime)
            code = await self._run(runtime, [*runtime.vllm, "run-batch", "-i", str(path),
                                             "-o", str(out), "--model", self.spec.model,
                                             *engine_args(self.spec)])
        if code != 0:
            raise FatalUpstream(f"backend {self.name!r}: vllm run-batch exited with code "
                                f"{code} on {path.name}; see {self.log_path}")
        ran.touch()
        return [out]

    async def _run(self, runtime: Runtime, argv: list[str]) -> int:
        """The command's exit code; on a cancel its whole process group is killed."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *die_with_parent(argv, str(runtime.python)),
                env=serve_env(self.spec, runtime.env()), stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            try:
                return await proc.wait()
            finally:
                if proc.returncode is None:  # cancelled: the engine goes with the run
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    await asyncio.shield(proc.wait())

    async def aclose(self) -> None:
        return None
