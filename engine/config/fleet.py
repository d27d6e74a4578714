"""vLLM's engine settings, and the `fleet:` section of a `kind: vllm` backend: which `vllm
serve` processes gristmill starts, on which GPUs, with which engine settings."""

from __future__ import annotations

from pydantic import field_validator, model_validator

from gristmill.config.base import Field, Strict

# Flags gristmill sets itself (from the fields below, or the port it picks).
MANAGED_FLAGS = ("--host", "--port", "--tensor-parallel-size", "-tp", "--served-model-name")


class EngineSettings(Strict):
    """vLLM engine settings of both kinds: in `fleet` for the `vllm serve` servers of kind
    vllm, on the backend itself for kind vllm-inproc."""

    dtype: str = Field("auto", answers=True, description="Weight dtype: auto, bfloat16, float16, float32 "
                       "(--dtype).")
    max_model_len: int | None = Field(None, answers=True, ge=16, description="Prompt + answer tokens per "
                                      "sequence (--max-model-len); default: the model's.")
    max_num_seqs: int | None = Field(None, answers=False, ge=1, description="The largest running batch of "
                                     "one engine (--max-num-seqs); default: vLLM's.")
    prefix_caching: bool | None = Field(None, answers=False, description="Reuse the KV cache of shared "
                                        "prompt prefixes: --enable-prefix-caching (true) or "
                                        "--no-enable-prefix-caching (false); default: vLLM's.")


class FleetConfig(EngineSettings):
    model: str | None = Field(None, answers=True, description="What `vllm serve` loads: a Hugging Face id "
                              "or a local folder; default: the backend's `model`.")
    gpus: list[int] = Field(answers=False, default_factory=list, description="GPU ids to use, e.g. [0, 1, 2, "
                            "3]; each server gets its group in CUDA_VISIBLE_DEVICES. Empty: "
                            "`servers` servers that see what the environment gives them "
                            "(CPU, or every GPU).")
    gpus_per_server: int = Field(1, answers=False, ge=1, le=64, description="GPUs per server: a tensor-"
                                 "parallel group (--tensor-parallel-size).")
    servers: int | None = Field(None, answers=False, ge=1, le=256, description="Number of servers; default: "
                                "len(gpus) / gpus_per_server, or 1 without gpus.")
    max_num_batched_tokens: int | None = Field(None, answers=False, ge=1, description="--max-num-batched-"
                                               "tokens per scheduler step.")
    enforce_eager: bool = Field(False, answers=False, description="--enforce-eager: no CUDA graphs (faster "
                                "start, slower decode).")
    extra_args: list[str] = Field(answers=True, default_factory=list, description="More `vllm serve` "
                                  "arguments, e.g. ['--gpu-memory-utilization', '0.92'].")
    env: dict[str, str] = Field(answers=False, default_factory=dict, description="Environment variables for "
                                "the servers (over the inherited ones).")
    startup_timeout_s: float = Field(900.0, answers=False, gt=0, description="Seconds a server may take to "
                                     "answer /health (weights download and load included).")
    max_restarts: int = Field(3, answers=False, ge=0, le=100, description="Failed start attempts in a row "
                              "after a server died before the fleet gives up on it (the run "
                              "fails once every server is given up).")

    @field_validator("extra_args")
    @classmethod
    def _not_managed(cls, args: list[str]) -> list[str]:
        for arg in args:
            if arg.split("=", 1)[0] in MANAGED_FLAGS:
                raise ValueError(f"{arg!r} is set by gristmill; use fleet.gpus_per_server for "
                                 "tensor parallelism and the backend's `model` for the served "
                                 "name (ports are picked at run time)")
        return args

    @model_validator(mode="after")
    def _placement(self) -> "FleetConfig":
        if len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"gpus: {self.gpus} lists a GPU twice")
        if self.gpus:
            groups, left = divmod(len(self.gpus), self.gpus_per_server)
            if left or not groups:
                raise ValueError(f"gpus: {len(self.gpus)} GPU(s) do not split into groups of "
                                 f"gpus_per_server={self.gpus_per_server}; list a multiple of it")
            if self.servers is not None and self.servers != groups:
                raise ValueError(f"servers: {self.servers} does not match {len(self.gpus)} "
                                 f"GPUs in groups of {self.gpus_per_server} ({groups} servers); "
                                 "drop `servers` or change `gpus`")
        return self

    def device_groups(self) -> list[tuple[int, ...]]:
        """One tuple of GPU ids per server (empty tuples without gpus)."""
        if not self.gpus:
            return [()] * (self.servers or 1)
        n = self.gpus_per_server
        return [tuple(self.gpus[i:i + n]) for i in range(0, len(self.gpus), n)]
