"""HTTP plumbing shared by every endpoint: the request observer, the body reader, problem and
JSON responses.

Two stacks answer requests: the raw ASGI endpoint of ``POST /v1/recommendations``
(gateway/recommendations.py) and Starlette for the others (gateway/endpoints.py). Both go
through the same ``RequestObserver`` (one scan of the headers, the request id, counting and
timing) and the same ``read_body``; Starlette's side through ``ObserverMiddleware``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, NamedTuple

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import PayloadTooLarge, ProblemError
from gateway.ids import IdGenerator
from gateway.metrics import Metrics

log = logging.getLogger("abgate.gateway")

PROBLEM_JSON = "application/problem+json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEAD_KEY = "abgate.head"  # where ObserverMiddleware leaves the ``RequestHead`` in the scope


class RequestHead(NamedTuple):
    """What the observer read from a request before it is handled."""

    request_id: str
    content_length: bytes | None
    authorization: bytes | None
    started: float  # time.perf_counter()


class RequestObserver:
    """Reads a request's head once, and counts and times its answer per endpoint."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.new_id = IdGenerator()
        self._latency: dict[str, Any] = {}

    def begin(self, scope: Scope) -> RequestHead:
        """The request id (the caller's if sane, else a new one) and the headers handlers use."""
        started = time.perf_counter()
        declared = auth = given_id = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"authorization":
                auth = value
            elif name == b"x-request-id":
                given_id = value
        return RequestHead(pick_request_id(given_id, self.new_id), declared, auth, started)

    def count(self, endpoint: str, status: int, started: float) -> None:
        """One answer of ``endpoint``: ``abgate_requests_total`` and ``abgate_request_seconds``."""
        latency = self._latency.get(endpoint)
        if latency is None:
            latency = self._latency[endpoint] = self.metrics.latency.labels(endpoint)
        self.metrics.request_child(endpoint, status).inc()
        latency.observe(time.perf_counter() - started)


class ObserverMiddleware:
    """The observer around Starlette's endpoints: ``X-Request-ID`` on every answer (errors
    included, so that any response can be correlated), the head in the scope for the handlers,
    and the answers of the ``counted`` (method, path) pairs counted under their endpoint name."""

    def __init__(
        self, app: ASGIApp, observer: RequestObserver, counted: Mapping[tuple[str, str], str]
    ) -> None:
        self.app = app
        self.observer = observer
        self.counted = counted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope[HEAD_KEY] = self.observer.begin(scope)
        rid = head.request_id.encode()
        status = 500  # unless an answer starts: an error that escaped every handler

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        endpoint = self.counted.get((scope["method"], scope["path"]))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if endpoint is not None:
                self.observer.count(endpoint, status, head.started)


def request_head(request: Request) -> RequestHead:
    """The head ``ObserverMiddleware`` read for this request."""
    head: RequestHead = request.scope[HEAD_KEY]
    return head


async def read_body(receive: Receive, declared: bytes | None, max_bytes: int) -> bytes:
    """The body, refusing more than ``max_bytes``: at once when the declared ``Content-Length``
    is larger, else as soon as the streamed chunks pass the limit (413)."""
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(
            f"the body has {declared.decode()} bytes; at most {max_bytes} are accepted"
        )
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def json_response(
    obj: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """An ``application/json`` response encoded with orjson."""
    return Response(
        orjson.dumps(obj), status_code=status, media_type="application/json", headers=headers
    )


def pick_request_id(given: bytes | None, new_id: Callable[[], str]) -> str:
    """``given`` if it is 1-128 printable ASCII characters, else a new id.

    Header bytes are not decoded with a guessed charset: a UTF-8 ``café-1`` read as latin-1 came
    back as ``cafÃ©-1``. Anything outside printable ASCII gets a fresh id instead (docs/integrators.md).
    """
    if given and len(given) <= 128 and given.isascii():
        text = given.decode("ascii")
        if text.isprintable():
            return text
    return new_id()


async def problem_handler(request: Request, exc: Exception) -> Response:
    """Render a ProblemError as RFC 9457 ``application/problem+json``."""
    if not isinstance(exc, ProblemError):  # pragma: no cover - registered for ProblemError only
        return await internal_error_handler(request, exc)
    return Response(
        orjson.dumps(exc.to_problem(request.url.path)),
        status_code=exc.status,
        media_type=PROBLEM_JSON,
        headers=exc.headers,
    )


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """Log an unexpected error with its trace; tell the caller nothing internal."""
    return Response(
        internal_problem(request.url.path, exc), status_code=500, media_type=PROBLEM_JSON
    )


def internal_problem(path: str, exc: BaseException) -> bytes:
    """Log ``exc`` with its trace and return the generic 500 problem body."""
    log.error("unhandled error", exc_info=exc, extra={"path": path})
    problem = {
        "type": "https://abgate.dev/problems/internal",
        "title": "Internal error",
        "status": 500,
        "detail": "the gateway failed to answer; the error is logged",
        "instance": path,
    }
    return orjson.dumps(problem)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Routing errors (404 no route, 405 method) as problem responses too."""
    status = getattr(exc, "status_code", 500)
    title = {404: "Not found", 405: "Method not allowed"}.get(status, "HTTP error")
    problem = {
        "type": f"https://abgate.dev/problems/http-{status}",
        "title": title,
        "status": status,
        "detail": f"{request.method} {request.url.path}: {title.lower()}",
        "instance": request.url.path,
    }
    # 405 carries Starlette's ``Allow`` header (RFC 9110 requires it).
    headers = getattr(exc, "headers", None)
    return Response(
        orjson.dumps(problem), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )
