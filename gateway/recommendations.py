"""``POST /v1/recommendations`` as a raw ASGI callable: the request path without framework layers.

The benchmark's profile showed the Starlette app at ~36% of a request's CPU, a share of it in
building ``Request``/``Response`` objects and the per-route exception wrapper. This endpoint
takes the three headers it needs from the shared ``RequestObserver``, reads the body with the
shared ``read_body``, and sends pre-assembled headers. It is mounted as a normal route (so 405
and routing stay Starlette's) and ``GatewayApp`` (gateway/app.py) also dispatches to it before
the middleware stack.
"""

from __future__ import annotations

import orjson

from gateway.errors import ProblemError
from gateway.http import PROBLEM_JSON, Receive, Scope, Send, internal_problem, read_body
from gateway.lifespan import AppState
from gateway.parsing import parse_recommendation

PATH = "/v1/recommendations"
_JSON = (b"content-type", b"application/json")
_PROBLEM = (b"content-type", PROBLEM_JSON.encode())


class RecommendationsEndpoint:
    """The ASGI app of ``POST /v1/recommendations``."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.observer = state.observer
        self.auth = state.auth
        self.metrics = state.metrics
        self.max_body = state.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = self.observer.begin(scope)
        rid = head.request_id
        status = 500
        extra: list[tuple[bytes, bytes]] = []
        try:
            caller = self.auth.admit(head.authorization, head.started)
            req = parse_recommendation(await read_body(receive, head.content_length, self.max_body))
            if caller is not None:
                caller.check_surface(req.surface)
            gw = self.state.running()
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
        except Exception as exc:  # never a trace to the caller
            body = internal_problem(PATH, exc)
            kind = _PROBLEM
        finally:
            self.observer.count("recommendations", status, head.started)
        headers = [
            kind,
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", rid.encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
