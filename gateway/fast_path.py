"""``POST /v1/recommendations`` as a raw ASGI callable: the request path without framework layers.

The benchmark's profile showed the Starlette app at ~36% of a request's CPU, a share of it in
building ``Request``/``Response`` objects and the per-route exception wrapper. This endpoint
reads the three headers it needs straight from the scope, reads the body with the size limit,
and sends pre-assembled headers. It is mounted as a normal route (so 405 and routing stay
Starlette's) and ``GatewayApp`` also dispatches to it before the middleware stack.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.applications import Starlette

from gateway.auth import Authenticator
from gateway.errors import PayloadTooLarge, ProblemError
from gateway.http import PROBLEM_JSON, internal_problem, pick_request_id
from gateway.ids import IdGenerator
from gateway.metrics import Metrics
from gateway.requests import parse_recommendation

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATH = "/v1/recommendations"
_JSON = (b"content-type", b"application/json")
_PROBLEM = (b"content-type", PROBLEM_JSON.encode())


async def _read_body(receive: Receive, declared: bytes | None, max_bytes: int) -> bytes:
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


class RecommendationsEndpoint:
    """The ASGI app of ``POST /v1/recommendations``."""

    def __init__(
        self, holder: dict[str, Any], metrics: Metrics, auth: Authenticator, max_body: int
    ) -> None:
        self.holder = holder
        self.metrics = metrics
        self.auth = auth
        self.max_body = max_body
        self.latency = metrics.latency.labels("recommendations")
        self.new_id = IdGenerator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        declared = auth = given_id = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"authorization":
                auth = value
            elif name == b"x-request-id":
                given_id = value
        rid = pick_request_id(given_id, self.new_id)
        extra: list[tuple[bytes, bytes]] = []
        caller = None
        try:
            caller = self.auth.authenticate(auth)
            if caller is not None:
                caller.check_rate(started)
            req = parse_recommendation(await _read_body(receive, declared, self.max_body))
            if caller is not None:
                caller.check_surface(req.surface)
            gw = self.holder["gw"]
            answer = await gw.answer(req)
            gw.log_exposure(answer, req.unit_id, rid, req.attributes)
            route, model = answer.route, answer.model
            body = orjson.dumps(
                {
                    "request_id": rid,
                    "surface": req.surface,
                    "unit_id": req.unit_id,
                    # a holdout unit is outside the experiment, as far as the caller knows
                    "experiment": None if route.holdout else route.experiment,
                    "variant": None if route.holdout else route.variant,
                    "model": {"name": model.name, "version": model.version},
                    "items": answer.items,
                    "source": answer.source,
                }
            )
            self.metrics.served_child(req.surface, answer.source).inc()
            status = 200
            kind = _JSON
        except ProblemError as exc:
            status = exc.status
            body = orjson.dumps(exc.to_problem(PATH))
            kind = _PROBLEM
            extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            if status == 429:
                self.metrics.rate_limited_child(caller.name if caller else "").inc()
        except Exception as exc:  # never a trace to the caller
            body = internal_problem(PATH, exc)
            kind = _PROBLEM
        finally:
            self.metrics.request_child("recommendations", status).inc()
            self.latency.observe(time.perf_counter() - started)
        headers = [
            kind,
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", rid.encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Echo the caller's ``X-Request-ID`` (or a new one) on every other endpoint's answer,
    errors included, so that any response can be correlated."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.new_id = IdGenerator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = pick_request_id(given, self.new_id).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class GatewayApp(Starlette):
    """Starlette, with ``POST /v1/recommendations`` dispatched before the middleware stack."""

    fast: RecommendationsEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast
        if (
            fast is not None
            and scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "POST"
        ):
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
