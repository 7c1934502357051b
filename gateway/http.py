"""HTTP plumbing shared by the handlers: body limits, request ids, problem and JSON responses."""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import PayloadTooLarge, ProblemError

log = logging.getLogger("abgate.gateway")

PROBLEM_JSON = "application/problem+json"


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


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refusing more than ``max_bytes`` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body has {declared} bytes; at most {max_bytes} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
