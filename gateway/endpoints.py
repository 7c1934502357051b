"""The endpoints Starlette serves: events, the experiment listing, health, metrics, OpenAPI.

Each is a plain function of the request; what they share (the gateway, metrics, the
authenticator) is the app's typed ``AppState`` (gateway/lifespan.py), and the head the
``ObserverMiddleware`` read (request id, ``Content-Length``, ``Authorization``) is in the scope.
``POST /v1/recommendations`` is not here: it is a raw ASGI endpoint (gateway/recommendations.py).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Caller
from gateway.errors import BackendUnavailable
from gateway.http import json_response, read_body, request_head
from gateway.lifespan import AppState
from gateway.listing import describe, running_arms
from gateway.openapi import build_openapi
from gateway.parsing import event_results, parse_events


def app_state(request: Request) -> AppState:
    """The typed state of the app serving ``request``."""
    state: AppState = request.app.state.abgate
    return state


def _admit(request: Request, state: AppState) -> Caller | None:
    head = request_head(request)
    return state.auth.admit(head.authorization, head.started)


async def events(request: Request) -> Response:
    """``POST /v1/events``: queue outcome events for every log sink, answered per element
    (202; 503 when the log dropped any)."""
    state = app_state(request)
    _admit(request, state)
    declared = request_head(request).content_length
    parsed = parse_events(await read_body(request.receive, declared, state.settings.max_body_bytes))
    body = event_results(parsed, state.running().logger.put)
    state.metrics.outcomes.inc(body["accepted"])
    return json_response(body, status=503 if body["dropped"] else 202)


async def list_experiments(request: Request) -> Response:
    """``GET /v1/experiments``: what this replica serves right now."""
    state = app_state(request)
    _admit(request, state)
    return json_response(describe(state.running().state))


async def healthz(request: Request) -> Response:
    """``GET /healthz``: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """``GET /readyz``: each backend pinged, the log and configuration checked; 503 only with
    ``?strict=1`` (a degraded replica still serves fallbacks)."""
    state = app_state(request)
    gw = state.gateway
    if gw is None:
        return json_response({"status": "starting"}, status=503)
    checks = {}
    for name, ping in (("postgres", gw.results.store.ping), ("redis", gw.results.cache.ping)):
        try:
            await ping()
            checks[name] = "ok"
        except BackendUnavailable as exc:
            checks[name] = f"down: {exc}"
    checks["log"] = gw.logger.status()
    healthy = all(v == "ok" for v in checks.values())
    strict = request.query_params.get("strict") in {"1", "true"}
    snapshot = gw.state.router.snapshot
    config = {
        "origin": snapshot.origin,
        "revision": snapshot.revision,
        "from_disk_cache": snapshot.from_disk_cache,
        "last_error": getattr(state.source, "last_error", None),
    }
    if snapshot.from_disk_cache:
        checks["config"] = "stale: serving the snapshot kept on disk"
        healthy = False
    body = {
        "status": "ready" if healthy else "degraded",
        "checks": checks,
        "config": config,
        "experiments": running_arms(gw.state),
    }
    return json_response(body, status=200 if healthy or not strict else 503)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text of this process (or of every worker)."""
    state = app_state(request)
    if state.gateway is not None:
        state.metrics.log_queue.set(len(state.gateway.logger))
    return Response(state.metrics.export(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``: built once per configuration snapshot, so that the surfaces enum
    follows reloads."""
    state = app_state(request)
    snapshot = state.gateway.state.router.snapshot if state.gateway is not None else None
    if state.openapi_snapshot is not snapshot or not state.openapi_document:
        surfaces = list(snapshot.config.surfaces.values()) if snapshot is not None else []
        state.openapi_document = build_openapi(
            surfaces, auth=state.auth.required, rate_limits=state.settings.api_keys
        )
        state.openapi_snapshot = snapshot
    return Response(state.openapi_document, media_type="application/json")
