"""The Starlette application: ``create_app(settings)`` builds one gateway with its own backends.

Backends are constructed once in the lifespan (gateway/lifespan.py) and passed in through
constructors; nothing is created at import time, so each test builds its own app with its own
settings.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from experiments.settings import Settings
from experiments.source import ConfigSource
from gateway import endpoints
from gateway.auth import Authenticator
from gateway.errors import ProblemError
from gateway.http import (
    ObserverMiddleware,
    Receive,
    RequestObserver,
    Scope,
    Send,
    http_exception_handler,
    internal_error_handler,
    problem_handler,
)
from gateway.lifespan import AppState, Lifespan, ResultsBackend
from gateway.lookup import ResultsCache
from gateway.metrics import Metrics
from gateway.recommendations import PATH, RecommendationsEndpoint
from gateway.sinks import LogSink

# The Starlette endpoints counted in ``abgate_requests_total`` (recommendations counts itself).
COUNTED = {("POST", "/v1/events"): "events"}


class GatewayApp(Starlette):
    """Starlette, with ``POST /v1/recommendations`` dispatched before the middleware stack."""

    recommendations: RecommendationsEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.recommendations
        if (
            endpoint is not None
            and scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "POST"
        ):
            await endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    source: ConfigSource | None = None,
    sink: LogSink | None = None,
    store: ResultsBackend | None = None,
    cache: ResultsCache | None = None,
) -> GatewayApp:
    """A gateway app.

    ``source`` defaults to the YAML folder (``experiments_dir``) or the Postgres experiment
    store; ``sink`` to the sinks ``settings.log_sink`` names; ``store`` to Postgres
    (``postgres_dsn``) and ``cache`` to Redis (``redis_url``). Injected backends are not closed
    by the app.
    """
    if (store is None and not settings.postgres_dsn) or (cache is None and not settings.redis_url):
        raise ValueError("create_app needs settings.postgres_dsn and settings.redis_url")
    # One process: its own registry. Under --workers (abgate serve sets the folder): every
    # worker's values, whichever worker answers the scrape.
    metrics = Metrics(settings.prometheus_multiproc_dir if settings.workers > 1 else None)
    auth = Authenticator(
        settings.tokens,
        keys_enabled=settings.api_keys,
        on_rate_limited=lambda name: metrics.rate_limited_child(name).inc(),
    )
    observer = RequestObserver(metrics)
    state = AppState(settings, metrics, auth, observer)
    recommendations = RecommendationsEndpoint(state)
    routes = [
        Route(PATH, recommendations, methods=["POST"]),
        Route("/v1/events", endpoints.events, methods=["POST"]),
        Route("/v1/experiments", endpoints.list_experiments, methods=["GET"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/metrics", endpoints.metrics, methods=["GET"]),
        Route("/openapi.json", endpoints.openapi, methods=["GET"]),
    ]
    app = GatewayApp(
        routes=routes,
        lifespan=Lifespan(state, source=source, sink=sink, store=store, cache=cache),
        middleware=[Middleware(ObserverMiddleware, observer=observer, counted=COUNTED)],
        exception_handlers={
            ProblemError: problem_handler,
            HTTPException: http_exception_handler,
            Exception: internal_error_handler,
        },
    )
    # A trailing slash is another path (404): Starlette's redirect would name the Host header.
    app.router.redirect_slashes = False
    app.state.abgate = state
    app.recommendations = recommendations
    return app
