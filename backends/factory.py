"""A backend from its config: the one place that knows every kind of backend."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gristmill.config.pipeline import BackendConfig
from gristmill.protocol import Backend, RateHints

from gristmill.backends.openai_http.backend import OpenAIHTTPBackend


def build_backend(name: str, config: BackendConfig, *,
                  on_rate_hints: Callable[[RateHints], None] | None = None,
                  log_dir: Path | None = None, work_dir: Path | None = None) -> Backend:
    """kind 'openai': an HTTP backend over `base_urls`; kind 'vllm': the same over a fleet of
    `vllm serve` processes it declares as its `capabilities.fleet` (not started yet: the run
    enters it); kind 'vllm-inproc': vLLM in this process. `micro_batch` wraps the HTTP
    backend in a batcher that keeps every capability."""
    if config.kind == "vllm-inproc":
        from gristmill.backends.vllm.inproc import VLLMInProcBackend  # vLLM only when used

        return VLLMInProcBackend(name, config)
    if config.mode == "batch":
        from gristmill.backends.openai_batch.backend import OpenAIBatchBackend

        if work_dir is None:
            raise ValueError("a batch backend keeps its books in a run directory")
        runner = None
        if config.kind == "vllm":  # files through `vllm run-batch`, not a provider's API
            from gristmill.backends.vllm.run_batch import VLLMRunBatch

            log = (log_dir or work_dir) / f"vllm-run-batch-{name}.log"
            runner = lambda backend, ledger: VLLMRunBatch(name, config, log)  # noqa: E731
        return OpenAIBatchBackend(name, config, work_dir / "batches" / name, runner)
    fleet = None
    if config.kind == "vllm":
        from gristmill.backends.vllm.fleet import VLLMFleet

        fleet = VLLMFleet.from_config(name, config, log_dir=log_dir)
        config = config.model_copy(update={"base_urls": fleet.base_urls})  # ports are picked
    backend = OpenAIHTTPBackend(name, config, on_rate_hints, fleet=fleet)
    if config.micro_batch is not None:
        from gristmill.backends.micro_batch import CompletionBatcher

        return CompletionBatcher(backend, config.micro_batch)
    return backend
