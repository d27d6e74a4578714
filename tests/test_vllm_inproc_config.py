"""The in-process backend's plain parts, without vLLM: sampling and engine arguments from a
config, config errors, and the error a run gets where vLLM is not installed (this venv)."""

from __future__ import annotations

import importlib.util

import pytest
from pydantic import ValidationError

from gristmill.protocol import Request
from gristmill.backends.vllm.inproc import (VLLMInProcBackend, engine_kwargs, sampling_kwargs,
                                            structured_outputs)
from gristmill.config.pipeline import BackendConfig
from gristmill.errors import BadRequest
from gristmill.runs.assembly import make_client


def test_sampling_kwargs_map_request_params():
    kwargs = sampling_kwargs({"temperature": 0.2, "max_tokens": 9, "stop": ("\n",),
                              "ignore_eos": True, "seed": 3}, None, allow_seed=True)
    assert kwargs == {"temperature": 0.2, "max_tokens": 9, "stop": ["\n"], "ignore_eos": True,
                      "seed": 3}
    assert "seed" not in sampling_kwargs({"seed": 3}, None, allow_seed=False)


def test_unknown_sampling_params_are_refused_by_name():
    with pytest.raises(BadRequest, match="'logprobz'"):
        sampling_kwargs({"logprobz": 1}, None, allow_seed=True)


def test_response_formats_become_structured_outputs():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert sampling_kwargs({}, fmt, allow_seed=True) == {"structured_outputs": {"json": schema}}
    assert structured_outputs({"type": "json_object"}) == {"json_object": True}
    with pytest.raises(BadRequest, match="'grammar'"):
        structured_outputs({"type": "grammar"})
    with pytest.raises(BadRequest, match="schema"):
        structured_outputs({"type": "json_schema", "json_schema": {"name": "x"}})


def test_engine_kwargs_from_config():
    config = BackendConfig(kind="vllm-inproc", model="/m", dtype="bfloat16", max_model_len=2048,
                           max_num_seqs=64, prefix_caching=False,
                           engine_args={"enforce_eager": True, "max_num_seqs": 32})
    assert engine_kwargs(config) == {"model": "/m", "dtype": "bfloat16", "max_model_len": 2048,
                                     "max_num_seqs": 32, "enable_prefix_caching": False,
                                     "enforce_eager": True, "disable_log_stats": True}


@pytest.mark.parametrize("data, field", [
    ({"model": "m"}, "base_urls"),
    ({"kind": "vllm-inproc", "model": "m", "base_url": "http://h/v1"}, "base_urls"),
    ({"kind": "vllm-inproc", "model": "m", "scrape_metrics": True}, "scrape_metrics"),
    ({"model": "m", "base_url": "http://h/v1", "micro_batch": {}}, "micro_batch"),
    ({"kind": "vllm-inproc", "model": "m", "api": "completions", "micro_batch": {}},
     "micro_batch"),
    ({"model": "m", "base_url": "http://h/v1", "batch": {}}, "batch: renamed to micro_batch"),
    ({"model": "m", "base_url": "http://h/v1", "metrics": True},
     "metrics: renamed to scrape_metrics"),
    ({"kind": "vllm", "model": "m", "dtype": "float16"}, "dtype: .* in `fleet`"),
    ({"model": "m", "base_url": "http://h/v1", "max_num_seqs": 8}, "max_num_seqs: .* remove"),
])
def test_config_errors_name_the_field(data, field):
    with pytest.raises(ValidationError, match=field):
        BackendConfig(**data)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
async def test_without_vllm_the_first_request_says_what_to_do():
    client = make_client("local", BackendConfig(kind="vllm-inproc", model="/m",
                                                retry={"max_attempts": 1}))
    assert isinstance(client.backend, VLLMInProcBackend)
    try:
        with pytest.raises(BadRequest, match="needs vLLM importable"):
            await client.call(Request("m", messages=[{"role": "user", "content": "hi"}]))
        assert client.in_flight == 0
    finally:
        await client.aclose()
