"""What answers cost: a model's price, the cost of one answer from the usage its server
reported, and the running sums per model that a client keeps (one multiply-add per answer).

Cost is only ever computed from reported usage, never estimated from text; a model without a
price has no cost (None), which the summary shows as null rather than as zero."""

from __future__ import annotations

from dataclasses import dataclass

from gristmill.protocol import Usage

__all__ = ["ModelSpend", "Price", "Usage", "total_cost"]

PER_TOKEN = 1e-6  # prices are USD per million tokens


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; `batch_discount` is the share a batch API takes off."""

    input: float
    cached_input: float
    output: float
    batch_discount: float = 0.5

    def batched(self) -> "Price":
        """The price of the same model through a batch API: every rate at the discount."""
        keep = 1.0 - self.batch_discount
        return Price(self.input * keep, self.cached_input * keep, self.output * keep, 0.0)

    def cost(self, usage: Usage, batch: bool = False) -> float:
        """(prompt - cached) x input + cached x cached_input + completion x output; with
        `batch`, at the discount (a batch client's prices are `batched()` already)."""
        cached = min(usage.cached_prompt_tokens, usage.prompt_tokens)
        usd = ((usage.prompt_tokens - cached) * self.input + cached * self.cached_input
               + usage.completion_tokens * self.output) * PER_TOKEN
        return usd * (1.0 - self.batch_discount) if batch else usd

    def worst_case(self, prompt_tokens: int, max_tokens: int) -> float:
        """The most a request can cost: its whole prompt uncached, every token it may write."""
        return (prompt_tokens * self.input + max_tokens * self.output) * PER_TOKEN


@dataclass(slots=True)
class ModelSpend:
    """Running sums for one model of one backend; cost_usd None while it is unpriced."""

    cost_usd: float | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def add(self, cost: float | None, usage: Usage, requests: int = 1) -> None:
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost
        self.prompt_tokens += usage.prompt_tokens
        self.cached_tokens += usage.cached_prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.requests += requests


def total_cost(spends: "dict[str, ModelSpend]") -> float | None:
    """The sum of the priced models' costs; None when none is priced."""
    costs = [s.cost_usd for s in spends.values() if s.cost_usd is not None]
    return sum(costs) if costs else None
