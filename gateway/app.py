"""The Starlette application: ``create_app(settings)`` builds one gateway with its own backends.

Backends are constructed once in the lifespan and passed in through constructors; nothing is
created at import time, so each test builds its own app with its own settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from experiments.routing import Router
from experiments.settings import Settings
from experiments.source import ConfigSource, YamlDirectorySource
from experiments.store import PostgresConfigSource, PostgresKeyStore, create_pool
from gateway.auth import Authenticator, Caller
from gateway.errors import BackendUnavailable, ProblemError, RateLimited
from gateway.fast_path import GatewayApp, RecommendationsEndpoint, RequestIdMiddleware
from gateway.http import (
    http_exception_handler,
    internal_error_handler,
    json_response,
    problem_handler,
    read_body,
)
from gateway.keys import KEY_FAILURES, KeyFollower
from gateway.listing import describe, running_arms
from gateway.log_writer import build_log
from gateway.metrics import Metrics
from gateway.models import ModelDirectory, load_directory, read_directory_file, save_directory_file
from gateway.openapi import build_openapi
from gateway.read_path import ReadPath
from gateway.requests import parse_events
from gateway.results import PG_FAILURES, LocalCache, PostgresResultsStore, RedisResultsCache
from gateway.service import Gateway, ServingState
from gateway.sinks import LogSink

log = logging.getLogger("abgate.gateway")

Handler = Callable[[Request], Awaitable[Response]]


def _default_source(settings: Settings) -> ConfigSource:
    """The YAML folder when ``experiments_dir`` is set, else the Postgres experiment store."""
    if settings.experiments_dir is not None:
        return YamlDirectorySource(settings.experiments_dir)
    return PostgresConfigSource(
        settings.postgres_dsn or "",
        settings.postgres_schema,
        cache_file=settings.snapshot_file,
        poll_interval=settings.config_poll_interval,
    )


async def _connect_results(
    settings: Settings, router: Router
) -> tuple[asyncpg.Pool, ModelDirectory]:
    """The results pool and the model directory; from the disk copy if Postgres is down.

    A replica that starts during a Postgres outage serves what Redis holds and the default
    lists it kept on disk, and connects once Postgres is back (the pool connects lazily).
    """
    dsn, schema = settings.postgres_dsn or "", settings.postgres_schema
    sizes: dict[str, Any] = {
        "max_size": settings.postgres_pool_max,
        "command_timeout": settings.postgres_timeout * 5,
    }
    try:
        pool = await create_pool(dsn, schema, min_size=settings.postgres_pool_min, **sizes)
    except PG_FAILURES as exc:
        kept = await asyncio.to_thread(read_directory_file, settings.directory_file)
        if kept is None:
            raise
        log.error(
            "postgres unreachable at start; using the model directory kept on disk",
            extra={"error": repr(exc)},
        )
        return await create_pool(dsn, schema, min_size=0, prepare=False, **sizes), kept
    store = PostgresResultsStore(pool, timeout=settings.postgres_timeout)
    directory = await load_directory(store, router)
    await asyncio.to_thread(save_directory_file, settings.directory_file, directory)
    return pool, directory


def create_app(
    settings: Settings, *, source: ConfigSource | None = None, sink: LogSink | None = None
) -> Starlette:
    """A gateway app.

    ``source`` defaults to the YAML folder (``experiments_dir``) or the Postgres experiment
    store; ``sink`` to the sinks ``settings.log_sink`` names.
    """
    if not settings.postgres_dsn or not settings.redis_url:
        raise ValueError("create_app needs settings.postgres_dsn and settings.redis_url")
    # One process: its own registry. Under --workers (abgate serve sets the folder): every
    # worker's values, whichever worker answers the scrape.
    metrics = Metrics(settings.prometheus_multiproc_dir if settings.workers > 1 else None)
    auth = Authenticator(settings.tokens, keys_enabled=settings.api_keys)
    max_body = settings.max_body_bytes
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Configuration first: an invalid configuration stops the start before anything else.
        config_source = source or _default_source(settings)
        snapshot = await config_source.load()
        router = Router(snapshot)
        pool, directory = await _connect_results(settings, router)

        def redis_client(url: str) -> aioredis.Redis:
            return aioredis.from_url(
                url,
                socket_timeout=settings.redis_timeout,
                socket_connect_timeout=settings.redis_timeout,
                max_connections=settings.redis_pool_max,
                retry_on_timeout=False,
            )

        client = redis_client(settings.redis_url or "")
        reader = redis_client(settings.redis_read_url) if settings.redis_read_url else None
        store = PostgresResultsStore(
            pool, timeout=settings.postgres_timeout, retry_after=settings.postgres_retry_after
        )
        cache = RedisResultsCache(
            client,
            prefix=settings.redis_prefix,
            ttl=settings.cache_ttl,
            negative_ttl=settings.negative_cache_ttl,
            retry_after=settings.redis_retry_after,
            on_fill_error=metrics.lookup["redis", "error"].inc,
            reader=reader,
        )
        logger = build_log(settings, metrics, {"sink": sink} if sink is not None else None)
        gw = Gateway(
            ServingState(router, directory),
            ReadPath(
                LocalCache(settings.local_cache_size, int(settings.local_cache_mb * 1024 * 1024)),
                cache,
                store,
                metrics,
            ),
            store,
            cache,
            logger,
            metrics,
            directory_file=settings.directory_file,
        )
        holder["gw"] = gw
        holder["source"] = config_source
        follower = None
        if settings.api_keys:
            follower = KeyFollower(
                PostgresKeyStore(pool),
                auth,
                dsn=settings.postgres_dsn or "",
                schema=settings.postgres_schema,
                workers=settings.workers,
                poll_interval=settings.config_poll_interval,
            )
            try:
                await follower.load()
            except KEY_FAILURES as exc:  # Postgres down at start: no key until it is back
                log.error("api keys not loaded; retrying", extra={"error": str(exc)})
            keys_task = asyncio.create_task(follower.run(), name="abgate-api-keys")
        logger.start()
        gw.start(config_source, settings.alias_refresh)
        try:
            yield
        finally:
            if follower is not None:
                keys_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keys_task
                with contextlib.suppress(*KEY_FAILURES):
                    await follower.flush_last_used()
            await gw.aclose()
            await logger.aclose()
            await config_source.aclose()
            await client.aclose()
            if reader is not None:
                await reader.aclose()
            await pool.close()
            metrics.retire()

    def counted(endpoint: str, handler: Handler) -> Handler:
        """Count every answer of ``handler`` by status and time it, errors included."""
        latency = metrics.latency.labels(endpoint)

        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status_code
                return response
            except ProblemError as exc:
                status = exc.status
                raise
            finally:
                metrics.request_child(endpoint, status).inc()
                latency.observe(time.perf_counter() - started)

        return wrapped

    def authenticate(request: Request) -> Caller | None:
        """The caller, checked against its rate limit (None when auth is off)."""
        header = next((v for k, v in request.scope["headers"] if k == b"authorization"), None)
        caller = auth.authenticate(header)
        if caller is not None:
            try:
                caller.check_rate(time.perf_counter())
            except RateLimited:
                metrics.rate_limited_child(caller.name).inc()
                raise
        return caller

    async def events(request: Request) -> Response:
        authenticate(request)
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
        authenticate(request)
        return json_response(describe(holder["gw"].state))

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
        checks["log"] = gw.logger.status()
        healthy = all(v == "ok" for v in checks.values())
        strict = request.query_params.get("strict") in {"1", "true"}
        snapshot = gw.state.router.snapshot
        config = {
            "origin": snapshot.origin,
            "revision": snapshot.revision,
            "from_disk_cache": snapshot.from_disk_cache,
            "last_error": getattr(holder.get("source"), "last_error", None),
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

    async def metrics_endpoint(request: Request) -> Response:
        holder_gw = holder.get("gw")
        if holder_gw is not None:
            metrics.log_queue.set(len(holder_gw.logger))
        return Response(metrics.export(), media_type=CONTENT_TYPE_LATEST)

    built: list[Any] = [None, b""]  # the snapshot the document was built for, the document

    async def openapi(request: Request) -> Response:
        # Built once per configuration snapshot: the surfaces enum follows reloads.
        gw = holder.get("gw")
        snapshot = gw.state.router.snapshot if gw is not None else None
        if built[0] is not snapshot or not built[1]:
            surfaces = list(snapshot.config.surfaces.values()) if snapshot is not None else []
            doc = build_openapi(surfaces, auth=auth.required, rate_limits=settings.api_keys)
            built[:] = [snapshot, doc]
        return Response(built[1], media_type="application/json")

    fast = RecommendationsEndpoint(holder, metrics, auth, max_body)
    routes = [
        Route("/v1/recommendations", fast, methods=["POST"]),
        Route("/v1/events", counted("events", events), methods=["POST"]),
        Route("/v1/experiments", list_experiments, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = GatewayApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={
            ProblemError: problem_handler,
            HTTPException: http_exception_handler,
            Exception: internal_error_handler,
        },
    )
    # A trailing slash is another path (404): Starlette's redirect would name the Host header.
    app.router.redirect_slashes = False
    app.state.holder = holder
    app.state.auth = auth
    app.fast = fast
    return app
