"""The gateway's lifespan: builds its backends in order at start-up, closes them in reverse.

``AppState`` is what every endpoint shares, typed: what ``create_app`` built (settings, metrics,
the authenticator, the request observer) and, while the lifespan runs, the ``Gateway`` and the
configuration source. The backends are the injected ones (``create_app(store=, cache=, source=,
sink=)``) or the ones ``settings`` names; an injected backend is closed by whoever made it.

Start-up order: the configuration (an invalid one stops the start before anything else is
opened), the results store and the first model directory, the cache, the exposure log, the
gateway and its refreshers, the API keys. Shutdown runs the same steps backwards: keys, gateway
(its pending cache fills), log (a final flush), cache, store, configuration source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from starlette.applications import Starlette

from experiments.routing import Router
from experiments.settings import Settings
from experiments.source import ConfigSnapshot, ConfigSource, YamlDirectorySource
from experiments.store import PostgresConfigSource, PostgresKeyStore, create_pool
from gateway.auth import Authenticator
from gateway.backends.postgres import PostgresResultsStore
from gateway.backends.redis import RedisResultsCache
from gateway.errors import ResultsStoreUnavailable
from gateway.http import RequestObserver
from gateway.keys import KeyFollower
from gateway.local_cache import LocalCache
from gateway.log_writer import build_log
from gateway.lookup import Items, ResultsCache, ResultsStore, TieredLookup
from gateway.metrics import Metrics
from gateway.model_directory import (
    ModelCatalog,
    ModelDirectory,
    load_directory,
    read_directory_file,
    save_directory_file,
)
from gateway.serving import Gateway, ServingState
from gateway.sinks import LogSink

log = logging.getLogger("abgate.gateway")


class ResultsBackend(ResultsStore, ModelCatalog, Protocol):
    """A results store that also holds the model catalog (aliases, pins, default lists), as
    Postgres does: what ``create_app(store=...)`` takes."""


@dataclass(slots=True)
class AppState:
    """What the endpoints of one app share; ``gateway`` and ``source`` are set while the
    lifespan runs (None before start-up and after shutdown)."""

    settings: Settings
    metrics: Metrics
    auth: Authenticator
    observer: RequestObserver
    gateway: Gateway | None = None
    source: ConfigSource | None = None
    # The OpenAPI document and the snapshot it was built for (rebuilt on a reload).
    openapi_snapshot: ConfigSnapshot | None = None
    openapi_document: bytes = b""

    def running(self) -> Gateway:
        """The gateway; RuntimeError before start-up (uvicorn never serves before it)."""
        gateway = self.gateway
        if gateway is None:
            raise RuntimeError("the gateway is not running (its lifespan has not started)")
        return gateway


def default_source(settings: Settings) -> ConfigSource:
    """The YAML folder when ``experiments_dir`` is set, else the Postgres experiment store."""
    if settings.experiments_dir is not None:
        return YamlDirectorySource(settings.experiments_dir)
    return PostgresConfigSource(
        settings.postgres_dsn or "",
        settings.postgres_schema,
        cache_file=settings.snapshot_file,
        poll_interval=settings.config_poll_interval,
    )


class Lifespan:
    """The lifespan of one app: ``Starlette(lifespan=Lifespan(state, ...))``."""

    def __init__(
        self,
        state: AppState,
        *,
        source: ConfigSource | None = None,
        sink: LogSink | None = None,
        store: ResultsBackend | None = None,
        cache: ResultsCache | None = None,
    ) -> None:
        self.state = state
        self.source = source
        self.sink = sink
        self.store = store
        self.cache = cache

    @contextlib.asynccontextmanager
    async def __call__(self, app: Starlette) -> AsyncIterator[None]:
        state, settings, metrics = self.state, self.state.settings, self.state.metrics
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(metrics.retire)
            source = self.source or default_source(settings)
            stack.push_async_callback(source.aclose)
            router = Router(await source.load())
            store, directory = await self._open_store(router, stack)
            cache = self.cache
            if cache is None:
                redis = RedisResultsCache.from_settings(
                    settings, on_fill_error=metrics.lookup["redis", "error"].inc
                )
                stack.push_async_callback(redis.aclose)
                cache = redis
            logger = build_log(settings, metrics, {"sink": self.sink} if self.sink else None)
            stack.push_async_callback(logger.aclose)
            local = LocalCache[Items](
                settings.local_cache_size, int(settings.local_cache_mb * 1024 * 1024)
            )
            gateway = Gateway(
                ServingState(router, directory),
                TieredLookup(local, cache, store, metrics),
                store,
                logger,
                metrics,
                directory_file=settings.directory_file,
            )
            stack.push_async_callback(gateway.aclose)
            if settings.api_keys:
                await self._follow_keys(store, stack)
            logger.start()
            gateway.start(source, settings.alias_refresh)
            state.gateway, state.source = gateway, source
            try:
                yield
            finally:
                state.gateway = state.source = None

    async def _open_store(
        self, router: Router, stack: contextlib.AsyncExitStack
    ) -> tuple[ResultsBackend, ModelDirectory]:
        """The results store and the first model directory; from the disk copy if the store
        cannot be reached.

        A replica that starts during a Postgres outage serves what the cache holds and the
        default lists it kept on disk, and connects once Postgres is back (the pool connects
        lazily).
        """
        settings = self.state.settings
        store = self.store
        if store is None:
            try:
                store = await PostgresResultsStore.connect(settings)
            except ResultsStoreUnavailable as exc:
                kept = await asyncio.to_thread(read_directory_file, settings.directory_file)
                if kept is None:
                    raise
                log.error(
                    "postgres unreachable at start; using the model directory kept on disk",
                    extra={"error": repr(exc.__cause__ or exc)},
                )
                lazy = await PostgresResultsStore.connect(settings, lazy=True)
                stack.push_async_callback(lazy.aclose)
                return lazy, kept
            stack.push_async_callback(store.aclose)
        directory = await load_directory(store, router)
        await asyncio.to_thread(save_directory_file, settings.directory_file, directory)
        return store, directory

    async def _follow_keys(self, store: ResultsBackend, stack: contextlib.AsyncExitStack) -> None:
        """Serve the API keys of Postgres, followed in the background."""
        settings = self.state.settings
        if isinstance(store, PostgresResultsStore):
            pool = store.pool
        else:  # another results backend: the keys still live in Postgres
            pool = await create_pool(settings.postgres_dsn or "", settings.postgres_schema)
            stack.push_async_callback(pool.close)
        follower = KeyFollower(
            PostgresKeyStore(pool),
            self.state.auth,
            dsn=settings.postgres_dsn or "",
            schema=settings.postgres_schema,
            workers=settings.workers,
            poll_interval=settings.config_poll_interval,
        )
        await follower.start()
        stack.push_async_callback(follower.aclose)
