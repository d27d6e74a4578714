"""The account behind the mock's key, for rehearsing what a hosted API refuses for good: the
models it serves, a key revoked after N requests, a quota exhausted after N requests. The
answers are OpenAI's (status, `error.type`, `error.code`), so clients can be tested against
them. Pure: the edges ask `refusal` and send what it says."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import orjson

Refusal = tuple[int, str, str, str]  # status, message, error type, error code


def add_account_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", action="append", default=[], metavar="NAME",
        help="a model this server serves (repeatable): /v1/models lists them and a request "
        "for another gets 404 model_not_found; without it, any model name is served and "
        "/v1/models lists none")
    add("--unauthorized-after", type=int, default=None, metavar="N",
        help="the key is revoked after N completion requests: later ones, and /v1/models, "
        "get 401 invalid_api_key (0: from the start)")
    add("--quota-after", type=int, default=None, metavar="N",
        help="the quota runs out after N completion requests: later ones get 429 "
        "insufficient_quota")


@dataclass(frozen=True, slots=True)
class Account:
    served: tuple[str, ...] = ()  # empty: any model
    unauthorized_after: int | None = None
    quota_after: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Account":
        return cls(tuple(dict.fromkeys(args.model)), args.unauthorized_after, args.quota_after)

    def revoked(self, done: int) -> Refusal | None:
        """The refusal of any request once `done` completion requests were answered, if the
        key is revoked by then."""
        if self.unauthorized_after is not None and done >= self.unauthorized_after:
            return (401, "Incorrect API key provided (revoked by the mock).",
                    "invalid_request_error", "invalid_api_key")
        return None

    def refusal(self, requests: int, model: object) -> Refusal | None:
        """The refusal of the `requests`-th completion request (counted from 1), if any."""
        if (revoked := self.revoked(requests - 1)) is not None:
            return revoked
        if (unknown := self.model_refusal(model)) is not None:
            return unknown
        if self.quota_after is not None and requests > self.quota_after:
            return (429, "You exceeded your current quota, please check your plan and billing "
                    "details.", "insufficient_quota", "insufficient_quota")
        return None

    def model_refusal(self, model: object) -> Refusal | None:
        """The refusal of a request for a model this account is not served, if so."""
        if self.served and model not in self.served:
            return (404, f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error", "model_not_found")
        return None

    def models_body(self) -> bytes:
        return orjson.dumps({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "gristmill"}
            for m in self.served]})
