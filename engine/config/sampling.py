"""`sampling:` of a stage, a kind or the judge: what the server samples with."""

from __future__ import annotations

from pydantic import ConfigDict

from gristmill.config.base import Field, Strict


class Sampling(Strict):
    model_config = ConfigDict(extra="allow")  # pass-through of server-specific parameters
    temperature: float | None = Field(None, answers=True, ge=0, le=2, description="Sampling temperature; "
                                      "default: the server's.")
    top_p: float | None = Field(None, answers=True, gt=0, le=1, description="Nucleus sampling: the "
                                "smallest set of tokens whose probabilities sum to this; "
                                "default: the server's.")
    max_tokens: int | None = Field(None, answers=True, ge=1, description="Most completion tokens per answer; "
                                   "default: the server's (the rate limiter then assumes the "
                                   "backend's default_max_tokens).")
    stop: list[str] | None = Field(None, answers=True, description="Strings that end the answer when "
                                   "generated.")
    seed: int | None = Field(None, answers=True, description="Sampling seed sent with each request (kind "
                             "vllm-inproc on vLLM's CPU build drops it; `gristmill demo` "
                             "refuses it). Any other key here, e.g. repetition_penalty, is "
                             "passed to the server as is.")
