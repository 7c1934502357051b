"""The Starlette application: ``create_app(settings)`` builds one gateway with its own backends.

Backends are constructed once in the lifespan and passed in through constructors; nothing is
created at import time, so each test builds its own app with its own settings.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from experiments import ModelRef
from experiments.postgres import create_pool
from experiments.routing import Router
from experiments.settings import Settings
from experiments.source import ConfigSource, YamlDirectorySource
from gateway.errors import BackendUnavailable, ProblemError
from gateway.http import (
    check_auth,
    http_exception_handler,
    internal_error_handler,
    json_response,
    problem_handler,
    read_body,
    request_id,
)
from gateway.metrics import Metrics
from gateway.models import load_directory
from gateway.openapi import OPENAPI
from gateway.read_path import ReadPath
from gateway.requests import parse_events, parse_recommendation
from gateway.results import LocalCache, PostgresResultsStore, RedisResultsCache
from gateway.service import Gateway, ServingState
from gateway.sinks import ArchiveSink, BatchingLogger, LogSink


def create_app(
    settings: Settings, *, source: ConfigSource | None = None, sink: LogSink | None = None
) -> Starlette:
    """A gateway app. ``source`` defaults to the YAML folder, ``sink`` to the local archive."""
    if not settings.postgres_dsn or not settings.redis_url:
        raise ValueError("create_app needs settings.postgres_dsn and settings.redis_url")
    config_source = source or YamlDirectorySource(settings.experiments_dir)
    log_sink = sink or ArchiveSink(
        settings.archive_dir, project=settings.gcp_project, log_id=settings.log_id
    )
    metrics = Metrics()
    tokens = settings.tokens
    max_body = settings.max_body_bytes
    holder: dict[str, Gateway] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Configuration first: an invalid folder stops the start before any connection is made.
        snapshot = await config_source.load()
        router = Router(snapshot)
        pool = await create_pool(
            settings.postgres_dsn or "",
            settings.postgres_schema,
            min_size=settings.postgres_pool_min,
            max_size=settings.postgres_pool_max,
            command_timeout=settings.postgres_timeout * 5,
        )
        client = aioredis.from_url(
            settings.redis_url or "",
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            max_connections=settings.redis_pool_max,
            retry_on_timeout=False,
        )
        store = PostgresResultsStore(pool, timeout=settings.postgres_timeout)
        cache = RedisResultsCache(
            client,
            prefix=settings.redis_prefix,
            ttl=settings.cache_ttl,
            negative_ttl=settings.negative_cache_ttl,
            retry_after=settings.redis_retry_after,
        )
        directory = await load_directory(store, router.model_refs())
        logger = BatchingLogger(
            log_sink,
            metrics,
            flush_interval=settings.log_flush_interval,
            batch_size=settings.log_batch_size,
            queue_max=settings.log_queue_max,
        )
        gw = Gateway(
            ServingState(router, directory),
            ReadPath(LocalCache(settings.local_cache_size), cache, store, metrics),
            store,
            cache,
            logger,
            metrics,
        )
        holder["gw"] = gw
        logger.start()
        gw.start(config_source, settings.alias_refresh)
        try:
            yield
        finally:
            await gw.aclose()
            await logger.aclose()
            await config_source.aclose()
            await client.aclose()
            await pool.close()

    async def recommendations(request: Request) -> Response:
        started = time.perf_counter()
        check_auth(request, tokens)
        req = parse_recommendation(await read_body(request, max_body))
        gw = holder["gw"]
        answer = await gw.answer(req)
        rid = request_id(request)
        gw.log_exposure(answer, req.unit_id, rid)
        route = answer.route
        body = {
            "request_id": rid,
            "surface": req.surface,
            "unit_id": req.unit_id,
            "experiment": route.experiment,
            "variant": route.variant,
            "model": {"name": answer.model.name, "version": answer.model.version},
            "items": answer.items,
            "source": answer.source,
        }
        metrics.served.labels(req.surface, answer.source).inc()
        metrics.latency.labels("recommendations").observe(time.perf_counter() - started)
        return json_response(body, headers={"x-request-id": rid})

    async def events(request: Request) -> Response:
        check_auth(request, tokens)
        outcomes = parse_events(await read_body(request, max_body))
        gw = holder["gw"]
        accepted = sum(gw.logger.put(o) for o in outcomes)
        metrics.outcomes.inc(accepted)
        if accepted < len(outcomes):
            return json_response(
                {"accepted": accepted, "dropped": len(outcomes) - accepted}, status=503
            )
        return json_response({"accepted": accepted}, status=202)

    async def list_experiments(request: Request) -> Response:
        check_auth(request, tokens)
        state = holder["gw"].state
        snapshot = state.router.snapshot
        out = []
        for key, e in sorted(snapshot.config.experiments.items()):
            out.append(
                {
                    "key": key,
                    "surface": e.surface,
                    "status": e.status,
                    "config_version": snapshot.version_of(key),
                    "variants": [
                        {
                            "key": v.key,
                            "weight": v.weight,
                            "model": v.model,
                            "resolved": str(state.directory.resolve(v.model_ref) or "unresolved"),
                        }
                        for v in e.variants
                    ],
                }
            )
        surfaces = [
            {
                "name": s.name,
                "default_model": s.default_model,
                "resolved": str(
                    state.directory.resolve(ModelRef.parse(s.default_model)) or "unresolved"
                ),
            }
            for s in snapshot.config.surfaces.values()
        ]
        return json_response({"origin": snapshot.origin, "surfaces": surfaces, "experiments": out})

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        gw = holder.get("gw")
        if gw is None:
            return json_response({"status": "starting"}, status=503)
        checks = {}
        for name, ping in (("postgres", gw.store.ping), ("redis", gw.cache.ping)):
            try:
                await ping()
                checks[name] = "ok"
            except BackendUnavailable as exc:
                checks[name] = f"down: {exc}"
        healthy = all(v == "ok" for v in checks.values())
        strict = request.query_params.get("strict") in {"1", "true"}
        body = {
            "status": "ready" if healthy else "degraded",
            "checks": checks,
            "config": gw.state.router.snapshot.origin,
        }
        return json_response(body, status=200 if healthy or not strict else 503)

    async def metrics_endpoint(request: Request) -> Response:
        holder_gw = holder.get("gw")
        if holder_gw is not None:
            metrics.log_queue.set(len(holder_gw.logger))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return json_response(OPENAPI)

    routes = [
        Route("/v1/recommendations", recommendations, methods=["POST"]),
        Route("/v1/events", events, methods=["POST"]),
        Route("/v1/experiments", list_experiments, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ProblemError: problem_handler,
            HTTPException: http_exception_handler,
            Exception: internal_error_handler,
        },
    )
    app.state.holder = holder
    return app
