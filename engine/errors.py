"""One small exception hierarchy. Library errors are mapped to these at the edge
(backends), so the engine decides retries by type, never by message."""

from __future__ import annotations


class GristmillError(Exception):
    """Base of every error gristmill raises on purpose."""


class ConfigError(GristmillError):
    """A configuration is invalid; the message names the field and what to change."""


class BackendError(GristmillError):
    """A request to a model backend failed."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = 1  # set by the client when it gives up


class RetryableError(BackendError):
    """Transient: the same request may succeed later."""

    retryable = True


class RateLimited(RetryableError):
    """429 or an overloaded server; `retry_after` is the server's hint in seconds."""

    def __init__(self, message: str, *, status: int | None = 429,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(RetryableError):
    """5xx from the server."""


class ConnectionReset(RetryableError):
    """The connection failed or was cut before the answer was complete."""


class Unreachable(ConnectionReset):
    """No connection could be made: the request never reached a server, so it is retried
    without using up the item's budget, until the backend has had no endpoint answer for
    `unreachable_after_s` (then the run stops: `FatalUpstream`)."""


class BackendTimeout(RetryableError):
    """A per-phase deadline passed."""

    phase = "total"


class ConnectTimeout(BackendTimeout):
    phase = "connect"


class FirstTokenTimeout(BackendTimeout):
    phase = "first_token"


class TotalTimeout(BackendTimeout):
    phase = "total"


class MalformedAnswer(BackendError):
    """The server answered (status 200) but not in the wire format: bad JSON in the body or an
    SSE event, a missing or null field, a wrong content type, a stream that ended without a
    finish. The answer was billed, so it is retried on its own small budget
    (`retry.malformed_retries`), apart from the budget of transient errors."""

    retryable = True


class BadRequest(BackendError):
    """4xx other than 429 (400/401/403/404/422...): retrying cannot help."""


class InvalidOutput(GristmillError):
    """The model answered, but the answer cannot be used (unparseable, rejected)."""

    def __init__(self, reason: str, *, text: str = "", validator: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.text = text
        self.validator = validator


class Deferred(GristmillError):
    """The item leaves its stage without being done and without being a reject (neither a
    backend error nor a stop): its seed stays not done."""


class Parked(Deferred):
    """The request waits in a batch file: the item is set aside (`flows.parking`) and comes
    back to its stage once the answer to `key` has arrived, instead of holding a worker."""

    def __init__(self, key: bytes) -> None:
        super().__init__("waiting for a batch")
        self.key = key


class NotSent(Deferred):
    """The request was not sent: the run's budget is closed. The item is not done; the run
    ends once the work in flight has, and a resume with a higher budget asks again."""


class RunStopped(GristmillError):
    """Going on is pointless: the run stops at once (not an item's failure, so never a
    reject). Work in flight is dropped without being marked done; a resume asks again."""

    stop_reason = "internal_error"


class FatalUpstream(RunStopped):
    """A backend refused for good: a bad key (401/403), a model it does not know (404), an
    exhausted quota (429 `insufficient_quota`), no endpoint reachable for too long, or a
    fleet that gave up. The message is one line: what the server said, the backend and URL,
    which key variable was used (never the key) and what to change."""

    stop_reason = "fatal_upstream"


class ErrorRateExceeded(RunStopped):
    """Too many requests of a backend ended in errors within the window
    (`stop_on_error_rate`); validator and judge rejects never count."""

    stop_reason = "error_rate"


class BudgetReached(RunStopped):
    """The next request could pass the run's spending budget (`budget_usd`, `--budget-usd`):
    nothing more was sent, the requests in flight finished, and what was not sent is not
    done; a resume with a higher budget asks for it."""

    stop_reason = "budget"
