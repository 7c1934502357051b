"""Errors of the gateway, rendered as RFC 9457 problem responses by one handler.

GatewayError                      (500, never shown with its message)
 ├── ProblemError                 an answer for the caller: status, stable type, detail
 │    ├── BadRequest              400, names the field
 │    ├── PayloadTooLarge         413
 │    ├── Unauthorized            401, with WWW-Authenticate
 │    ├── Forbidden               403
 │    ├── UnknownSurface          404
 │    ├── RateLimited             429, with Retry-After
 │    ├── NoAnswer                503, no list at all could be produced
 │    ├── LoggingUnavailable      503, experiment traffic refused: the log spool is full
 │    └── Overloaded              503, at the concurrency limit, with Retry-After
 ├── BackendUnavailable           a store or cache failed (translated at the adapter edge):
 │    │                           down, unreachable or too slow; its breaker opens
 │    ├── ResultsStoreUnavailable Postgres
 │    │    └── ResultsStoreSkipped  not asked: the breaker is open
 │    └── CacheUnavailable        Redis
 └── BackendRefused               a backend answered but refused this request's data (a
      │                           Postgres DataError): that request alone fails, no breaker
      ├── ResultsStoreRefused     Postgres
      └── CacheRefused            Redis
"""

from __future__ import annotations

PROBLEM_BASE = "https://abgate.dev/problems/"


class GatewayError(Exception):
    """Base of every gateway error."""


class ProblemError(GatewayError):
    """An error the caller is told about, as ``application/problem+json``."""

    status = 500
    type_ = "internal"
    title = "Internal error"

    def __init__(
        self, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.headers = headers or {}

    def to_problem(self, instance: str) -> dict[str, object]:
        """The RFC 9457 problem object."""
        problem: dict[str, object] = {
            "type": PROBLEM_BASE + self.type_,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.field is not None:
            problem["field"] = self.field
        return problem


class BadRequest(ProblemError):
    """The request body is malformed or a field is invalid."""

    status, type_, title = 400, "bad-request", "Bad request"


class PayloadTooLarge(ProblemError):
    """The body is larger than the configured limit."""

    status, type_, title = 413, "payload-too-large", "Payload too large"


class Unauthorized(ProblemError):
    """No bearer token, or one that is unknown or revoked (RFC 6750: ``invalid_token``)."""

    status, type_, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str, *, error: str | None = None) -> None:
        challenge = 'Bearer realm="abgate"' + (f', error="{error}"' if error else "")
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(ProblemError):
    """The key is valid but may not use this surface (RFC 6750: ``insufficient_scope``)."""

    status, type_, title = 403, "forbidden", "Forbidden"


class RateLimited(ProblemError):
    """The key's request rate is over its limit."""

    status, type_, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class UnknownSurface(ProblemError):
    """The surface is not declared."""

    status, type_, title = 404, "unknown-surface", "Unknown surface"


class NoAnswer(ProblemError):
    """Neither the unit's list nor any fallback list could be read."""

    status, type_, title = 503, "no-answer", "No answer available"


class LoggingUnavailable(ProblemError):
    """The exposure log cannot take records (spool full, ``ABGATE_SPOOL_FULL=refuse``)."""

    status, type_, title = 503, "logging-unavailable", "Logging unavailable"


class Overloaded(ProblemError):
    """The process is at its concurrency limit: answered at once, before any work."""

    status, type_, title = 503, "overloaded", "Overloaded"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class BackendUnavailable(GatewayError):
    """A backend (results store, cache) failed or timed out."""


class ResultsStoreUnavailable(BackendUnavailable):
    """Postgres failed or timed out."""


class CacheUnavailable(BackendUnavailable):
    """Redis failed or timed out."""


class ResultsStoreSkipped(ResultsStoreUnavailable):
    """Postgres was not asked: its breaker is open after a recent failure."""


class BackendRefused(GatewayError):
    """A backend answered, but refused this request's input: not an outage."""


class ResultsStoreRefused(BackendRefused):
    """Postgres refused a read (a data error, e.g. a character its text type cannot hold)."""


class CacheRefused(BackendRefused):
    """Redis refused a command (an error reply, or a key it cannot encode)."""
