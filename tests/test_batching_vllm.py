"""Batched completions against a real `vllm serve` (vLLM's CPU build here): each prompt gets
its own answer back (echo puts the prompt in front of it), the same as one request per prompt,
in fewer requests."""

from __future__ import annotations

import asyncio

import pytest

from gristmill.backends.micro_batch import CompletionBatcher
from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.protocol import Request
from gristmill.backends.vllm.server import ServerSpec, VLLMServer
from gristmill.config.pipeline import BackendConfig, MicroBatchConfig


pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

PARAMS = {"max_tokens": 12, "temperature": 0, "ignore_eos": True, "echo": True}


def prompt(i: int) -> Request:
    return Request("tiny", prompt=f"Mill number {i} grinds", params=PARAMS)


async def test_batched_answers_match_one_request_per_prompt(vllm_runtime, tiny_model,
                                                            tmp_path):
    spec = ServerSpec(model=str(tiny_model), served_model_name="tiny", max_model_len=512,
                      enforce_eager=True)
    async with VLLMServer(spec, vllm_runtime, log_path=tmp_path / "serve.log") as server:
        config = BackendConfig(base_url=server.base_url, model="tiny", api="completions")
        single = OpenAIHTTPBackend("single", config)
        batcher = CompletionBatcher(OpenAIHTTPBackend("batched", config),
                                    MicroBatchConfig(max_prompts=8, window_ms=50))
        try:
            expected = [await single.complete(prompt(i)) for i in range(12)]
            got = await asyncio.gather(*(batcher.complete(prompt(i)) for i in range(12)))
        finally:
            await single.aclose()
            await batcher.aclose()
    for i, (one, batched) in enumerate(zip(expected, got)):
        assert batched.text.startswith(f"Mill number {i} grinds")  # its own prompt, echoed
        assert batched.text == one.text and batched.finish_reason == "length"
    assert batcher.batches == 2 and batcher.batched_prompts == 12  # 8 + 4
    assert sum(c.usage.completion_tokens for c in got) == 12 * 12
    assert sum(c.usage.prompt_tokens for c in got) == sum(c.usage.prompt_tokens
                                                          for c in expected)
    assert batcher.waiting == 0 and batcher.sending == 0
