"""A backend's configuration: where requests go (an OpenAI-compatible server, a fleet of
`vllm serve` processes gristmill starts, or vLLM in this process), and the limits, deadlines
and retries around them."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator, model_validator

from gristmill.config.base import Field, RelPath, Strict
from gristmill.config.fleet import EngineSettings, FleetConfig
from gristmill.config.prices import PriceConfig


class Timeouts(Strict):
    connect: float = Field(10.0, answers=False, gt=0, description="Seconds to open a connection.")
    first_token: float = Field(120.0, answers=False, gt=0, description="Seconds until the response starts "
                               "(headers, and the first event when streaming).")
    total: float = Field(600.0, answers=False, gt=0, description="Seconds for the whole request.")


class Retry(Strict):
    max_attempts: int = Field(6, answers=False, ge=1, le=100, description="Attempts per request, the first included.")
    base_s: float = Field(0.5, answers=False, ge=0, description="First backoff ceiling; doubles per attempt.")
    max_s: float = Field(60.0, answers=False, ge=0, description="Largest backoff ceiling.")
    malformed_retries: int = Field(2, answers=False, ge=0, le=20, description="Retries of an "
                                   "answer that broke the wire format (bad JSON, a missing "
                                   "field, an HTML page, a stream without a finish): it was "
                                   "billed, so it has this budget of its own, apart from "
                                   "max_attempts; then the item is a reject.")


# Fields renamed since runs were first written: a pipeline config with an old name is an
# error naming the new one; a run directory's own config.yaml is read with the new names.
RENAMED = {"batch": "micro_batch", "metrics": "scrape_metrics"}


class MicroBatchConfig(Strict):
    """Micro-batches of prompts in one /v1/completions request."""

    max_prompts: int = Field(32, answers=False, ge=2, le=4096, description="Most prompts in one request.")
    window_ms: float = Field(3.0, answers=False, ge=0, le=1000, description="How long the first prompt of "
                             "a batch waits for others before the batch is sent.")


class BatchConfig(Strict):
    """How requests are gathered into hosted batch files (`mode: batch`)."""

    max_requests: int = Field(50_000, answers=False, ge=1, le=50_000, description="Most "
                              "requests in one file (OpenAI's limit is 50,000).")
    max_bytes: int = Field(100_000_000, answers=False, ge=1000, le=200_000_000, description=""
                           "Most bytes in one file (OpenAI's limit is 200 MB).")
    max_pending: int = Field(100_000, answers=False, ge=1, description="Most requests waiting "
                             "for answers at once, in open and submitted files; one more waits "
                             "for room. Their items wait on disk, not in memory: this bounds "
                             "the run's memory and how far ahead of the answers it reads its "
                             "input, not its size.")
    seal_after_s: float = Field(300.0, answers=False, gt=0, description="A file is sealed and "
                                "submitted at most this long after its first request.")
    idle_seal_s: float = Field(2.0, answers=False, gt=0, description="...or once no request "
                               "has joined it for this long: nothing more is coming soon.")
    completion_window: str = Field("24h", answers=False, description="The provider's "
                                   "completion window.")
    poll_s: float = Field(5.0, answers=False, gt=0, description="First wait before asking a "
                          "submitted batch's status; it doubles up to `poll_max_s`.")
    poll_max_s: float = Field(300.0, answers=False, gt=0, description="Longest wait between "
                              "two status polls of one batch.")
    regenerate: Literal["online", "batch"] = Field("online", answers=False, description="Where "
        "a regeneration after a rejected answer goes: 'online' answers it now (at the online "
        "price) instead of after another batch cycle.")


class BackendConfig(EngineSettings):
    """A backend. Its vLLM engine settings (dtype, max_model_len, max_num_seqs,
    prefix_caching) apply to kind vllm-inproc; a kind: vllm backend sets them in `fleet`."""

    kind: Literal["openai", "vllm", "vllm-inproc"] = Field(
        "openai", answers=False, description="'openai': any OpenAI-compatible HTTP server (hosted APIs, vllm "
        "serve, llama.cpp server) at `base_urls`. 'vllm': gristmill starts the `vllm serve` "
        "processes of `fleet`. 'vllm-inproc': vLLM's engine inside this process (needs "
        "`import vllm` to work here; no HTTP, no SSE).")
    base_urls: list[str] = Field(answers=False, default_factory=list, description="Base URLs, e.g. "
                                 "'https://api.openai.com/v1'; several are balanced by least "
                                 "outstanding requests. Required for kind 'openai'.")
    fleet: FleetConfig | None = Field(None, answers=True, description="The servers to start (kind: vllm).")
    model: str = Field(answers=True, min_length=1, description="Model name sent with every request; for "
                       "vllm-inproc the model path or Hugging Face name to load.")
    engine_args: dict[str, Any] = Field(answers=True, default_factory=dict, description="vllm-inproc: "
                                        "further AsyncEngineArgs fields, e.g. "
                                        "{'enforce_eager': true, 'gpu_memory_utilization': 0.8}.")
    mode: Literal["online", "batch"] = Field("online", answers=False, description="'online': "
        "each request is sent as it comes; 'batch': requests are gathered into files for the "
        "provider's Batch API (about half the price, answers within its completion window; "
        "docs/batch.md).")
    batch_files: BatchConfig = Field(answers=False, default_factory=BatchConfig, description=""
                                     "How mode: batch gathers requests into files.")
    micro_batch: MicroBatchConfig | None = Field(None, answers=False, description="api 'completions': send many "
                                        "prompts in one request (see backends.micro_batch); off "
                                        "by default.")
    api: Literal["chat", "completions"] = Field("chat", answers=True, description="Endpoint family.")
    tool_format: Literal["native", "prompted"] | None = Field(None, answers=True, description=""
        "How a dialogue's tools reach the model. 'native': the API's `tools` field, answers "
        "with `tool_calls` (a `vllm serve` needs --enable-auto-tool-choice and a "
        "--tool-call-parser). 'prompted': the tools described in the system message and the "
        "calls asked for as JSON under a JSON-schema response_format (any model that follows "
        "a schema). Default: native for kind openai, prompted for vllm and vllm-inproc. "
        "Records are in OpenAI's tools format either way.")
    api_key_env: str | None = Field("auto", answers=False, description="The environment variable "
                                    "holding the API key (the key itself never goes in a config). "
                                    "'auto': $GRISTMILL_API_KEY, else $OPENAI_API_KEY, the latter "
                                    "only to OpenAI's API or a server on this machine; null: no "
                                    "key.")
    auth_header: Literal["bearer", "api-key"] = Field("bearer", answers=False, description="How "
                                                      "the key is sent: 'Authorization: Bearer "
                                                      "KEY', or Azure's 'api-key: KEY' header.")
    headers: dict[str, str] = Field(answers=False, default_factory=dict, description="Extra HTTP headers.")
    query: dict[str, str] = Field(answers=False, default_factory=dict, description="Extra query parameters, "
                                  "e.g. {'api-version': '2024-10-21'} for Azure.")
    max_in_flight: int = Field(64, answers=False, ge=1, le=100_000, description="Most requests in flight at once.")
    rpm: int | None = Field(None, answers=False, ge=1, description="Requests per rate window (default window: a minute).")
    tpm: int | None = Field(None, answers=False, ge=1, description="Tokens (prompt + completion) per rate window.")
    rate_window_s: float = Field(60.0, answers=False, gt=0, description="Length of the rate window in seconds.")
    adaptive: bool = Field(True, answers=False, description="Halve the in-flight cap on 429/503 and regrow it "
                           "by AIMD.")
    scrape_metrics: bool = Field(False, answers=False, description="Scrape each endpoint's /metrics (vLLM names) "
                          "and set its in-flight cap so the running batch stays full and the "
                          "waiting queue short; max_in_flight is then only the ceiling "
                          "(default: on for kind: vllm).")
    metrics_interval_s: float = Field(0.5, answers=False, gt=0, description="Seconds between scrapes.")
    tokenizer: RelPath | None = Field(None, answers=False, description="A local tokenizer.json for exact token "
                                      "counts; without it, 4 characters per token.")
    default_max_tokens: int = Field(1024, answers=False, ge=1, description="Completion tokens assumed for TPM "
                                    "when a stage sets no max_tokens.")
    unreachable_after_s: float = Field(120.0, answers=False, gt=0, description="Stop the run "
        "(exit 3) once no endpoint has accepted a connection for this long; until then a "
        "request that could not connect waits and retries without using its retry budget. "
        "Longer than a server or load balancer restart, short enough that a wrong port or a "
        "dead host does not hold a run for hours.")
    preflight: bool = Field(True, answers=False, description="Before any seed is read, ask "
        "each endpoint's /models with the key: a refused key, a model the server does not "
        "list, or a base URL without /v1 stops the run (exit 3) before any work. Turn off for "
        "servers whose /models is missing or lists other names than they serve.")
    price: PriceConfig | None = Field(None, answers=False, description="USD per million "
        "tokens {input, cached_input, output, batch_discount} for every model of this backend, "
        "over the shipped table (configs/prices.yaml, OpenAI's models); a local model has no "
        "price unless given one here. Cost is reported only for priced models "
        "(docs/spend.md).")
    timeouts: Timeouts = Field(answers=False, default_factory=Timeouts, description="Per-phase deadlines "
                               "of a request.")
    retry: Retry = Field(answers=False, default_factory=Retry, description="How failed requests are retried "
                         "(429, 5xx, resets, cut streams, timeouts; never 400/401/403/404/422).")

    @model_validator(mode="before")
    @classmethod
    def _accept_single_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "base_url" in data:
            data = dict(data)
            url = data.pop("base_url")
            data.setdefault("base_urls", [url] if isinstance(url, str) else url)
        if isinstance(data, dict) and data.get("kind") == "vllm":
            data = {"scrape_metrics": True, "fleet": {}, **data}
        return data

    @property
    def tools_native(self) -> bool:
        return (self.tool_format or ("native" if self.kind == "openai" else "prompted")) \
            == "native"

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        for old, new in RENAMED.items():
            if isinstance(data, dict) and old in data:
                raise ValueError(f"{old}: renamed to {new}; write {new}: instead")
        return data

    @model_validator(mode="after")
    def _kind_fields(self) -> "BackendConfig":
        if self.kind == "openai" and not self.base_urls:
            raise ValueError("base_urls: give at least one URL, e.g. "
                             "base_url: 'http://127.0.0.1:8000/v1' (or kind: vllm with a fleet)")
        if self.kind == "vllm" and self.base_urls:
            raise ValueError("base_urls: a kind: vllm backend is reached at the servers it "
                             "starts; remove base_urls, or use kind: openai for running servers")
        if self.kind == "vllm-inproc" and self.base_urls:
            raise ValueError("base_urls: kind 'vllm-inproc' runs the model in this process; "
                             "remove base_urls (or use kind 'openai' for a server)")
        engine = [name for name, field in EngineSettings.model_fields.items()
                  if getattr(self, name) != field.default]  # a dumped config reloads as is
        if engine and self.kind == "vllm":
            raise ValueError(f"{engine[0]}: a kind: vllm backend sets its servers' engine "
                             f"in `fleet`; move it there (fleet: {{{engine[0]}: ...}})")
        if engine and self.kind == "openai":
            raise ValueError(f"{engine[0]}: a kind: openai backend talks to a running server, "
                             "whose engine is its own; remove it (or use kind: vllm with a "
                             "fleet, or kind: vllm-inproc)")
        if self.fleet is not None and self.kind != "vllm":
            raise ValueError("fleet: only a kind: vllm backend starts servers; add "
                             "kind: vllm or remove fleet")
        if self.kind == "vllm-inproc" and self.scrape_metrics:
            raise ValueError("scrape_metrics: kind 'vllm-inproc' has no /metrics endpoint to "
                             "scrape; set scrape_metrics: false")
        if self.micro_batch is not None and (self.kind == "vllm-inproc"
                                             or self.api != "completions"):
            raise ValueError("micro_batch: batching needs an HTTP backend with api 'completions' "
                             "(several prompts in one /v1/completions request)")
        if self.mode == "batch" and self.micro_batch is not None:
            raise ValueError("micro_batch: mode: batch already gathers requests into files; "
                             "remove micro_batch (or use mode: online)")
        if self.tool_format == "native" and self.kind == "vllm-inproc":
            raise ValueError("tool_format: the in-process engine has no tool-call parser; use "
                             "tool_format: prompted (or a vllm serve fleet with "
                             "--enable-auto-tool-choice)")
        if self.tool_format == "native" and self.kind == "vllm" and self.fleet is not None \
                and "--enable-auto-tool-choice" not in self.fleet.extra_args:
            raise ValueError("tool_format: native calls from vllm serve need fleet.extra_args: "
                             "[--enable-auto-tool-choice, --tool-call-parser, <parser>], or "
                             "use tool_format: prompted")
        if self.mode == "batch" and self.kind == "vllm-inproc":
            raise ValueError("mode: batch runs on a provider's Batch API (kind: openai) or "
                             "through `vllm run-batch` (kind: vllm); kind: vllm-inproc runs "
                             "online: remove mode: batch")
        if self.mode == "batch" and self.kind == "vllm" \
                and "regenerate" not in self.batch_files.model_fields_set:
            self.batch_files.regenerate = "batch"  # online would start servers for a few
        if self.mode == "batch" and "adaptive" not in self.model_fields_set:
            self.adaptive = False  # a refused batch fails its whole file at once: no signal
        return self

    def in_mode(self, mode: str | None) -> "BackendConfig":
        """This backend with its requests sent `mode` (a stage's override)."""
        if mode is None or mode == self.mode:
            return self
        data = self.model_dump(exclude_unset=True) | {"mode": mode}
        data.pop("adaptive", None)  # each mode has its own default
        return BackendConfig.model_validate(data)

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"{url!r} is not an http(s) URL; write e.g. 'http://127.0.0.1:8000/v1'")
        return [u.rstrip("/") for u in urls]

    @field_validator("headers")
    @classmethod
    def _no_inline_secrets(cls, headers: dict[str, str]) -> dict[str, str]:
        for key in headers:
            if key.lower() in ("authorization", "api-key", "x-api-key"):
                raise ValueError(f"header {key!r} would put a secret in the config; name the "
                                 "environment variable in api_key_env instead")
        return headers
