"""The Redis results cache: lists cached verbatim in front of the store, with breakers.

Lists are cached as the JSON bytes the store holds, under ``{prefix}r:{model}:{version}:{unit}``
(``RedisResultsCache.key``; batch warm-up writes the same keys): the key carries the model
version, so activating a new version can never serve a stale list. A marker (``NO_LIST``, empty
bytes) caches "this unit has no list" for a shorter TTL so unknown units do not reach Postgres
each time.

Point reads are coalesced (gateway/coalesce.py): the units asked for in one event-loop turn are
read with one ``MGET``, and cache fills written with one pipeline. Only an outage (a connection
error or a timeout) opens a breaker; an error reply refuses one command, not all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from experiments import ModelVersion, results_key
from experiments.settings import Settings
from gateway.breaker import Breaker
from gateway.coalesce import Coalescer
from gateway.errors import CacheRefused, CacheUnavailable
from gateway.lookup import NO_LIST

log = logging.getLogger("abgate.gateway")

# A Redis outage: anything else Redis says (an error reply) refuses one command, not all.
REDIS_OUTAGES = (TimeoutError, RedisTimeoutError, RedisConnectionError, OSError)


class RedisResultsCache:
    """Redis in front of Postgres, with a breaker: after a failure, skip Redis for a while.

    Without the breaker, a hung Redis would add its timeout to every request. With a
    ``reader`` (a read replica, e.g. Memorystore's read endpoint) reads go there and fills to
    ``client`` (the primary), each side with its own breaker: a lost replica does not stop
    fills, nor a lost primary reads.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        ttl: int,
        negative_ttl: int,
        retry_after: float,
        on_fill_error: Callable[[int], object] = lambda n: None,
        reader: aioredis.Redis | None = None,
    ) -> None:
        self.client = client
        self.reader = reader or client
        self.on_fill_error = on_fill_error
        self.prefix = prefix
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.breaker = Breaker(retry_after)  # reads
        self.fill_breaker = self.breaker if reader is None else Breaker(retry_after)
        self._gets: Coalescer[str, bytes | str | None] = Coalescer(self._mget)
        self._fills: Coalescer[tuple[str, bytes], None] = Coalescer(self._write_fills)
        self.max_pending_fills = 1000
        self._refusal_logged_at = -3600.0

    @classmethod
    def from_settings(
        cls, settings: Settings, *, on_fill_error: Callable[[int], object] = lambda n: None
    ) -> RedisResultsCache:
        """A cache on new clients (the primary, and the read replica when one is set)."""

        def client(url: str) -> aioredis.Redis:
            return aioredis.from_url(
                url,
                socket_timeout=settings.redis_timeout,
                socket_connect_timeout=settings.redis_timeout,
                max_connections=settings.redis_pool_max,
                retry_on_timeout=False,
            )

        return cls(
            client(settings.redis_url or ""),
            prefix=settings.redis_prefix,
            ttl=settings.cache_ttl,
            negative_ttl=settings.negative_cache_ttl,
            retry_after=settings.redis_retry_after,
            on_fill_error=on_fill_error,
            reader=client(settings.redis_read_url) if settings.redis_read_url else None,
        )

    async def aclose(self) -> None:
        """Close the clients (the primary, then the read replica)."""
        await self.client.aclose()
        if self.reader is not self.client:
            await self.reader.aclose()

    def key(self, mv: ModelVersion, unit_id: str) -> str:
        """The Redis key of a unit's list (batch warm-up must use the same)."""
        return results_key(self.prefix, mv, unit_id)

    @property
    def available(self) -> bool:
        """False while the breaker is open."""
        return self.breaker.closed

    async def get(self, mv: ModelVersion, unit_id: str) -> bytes | None:
        """Cached bytes or None; raises CacheUnavailable (and opens the breaker) on an outage,
        CacheRefused (breaker closed) when Redis refuses the command."""
        if not self.available:
            raise CacheUnavailable("redis: skipped after a recent failure")
        try:
            raw = await self._gets.get(self.key(mv, unit_id))
        except REDIS_OUTAGES as exc:
            self.breaker.trip()
            raise CacheUnavailable(f"redis: {type(exc).__name__}") from exc
        except (RedisError, UnicodeError) as exc:
            raise CacheRefused(f"redis refused the read: {type(exc).__name__}") from exc
        return raw if raw is None or isinstance(raw, bytes) else raw.encode()

    async def _mget(self, keys: list[str]) -> list[bytes | str | None]:
        if len(keys) == 1:  # GET: Redis answers it without MGET's array reply
            return [await self.reader.get(keys[0])]
        return await self.reader.mget(keys)

    def fill(self, mv: ModelVersion, unit_id: str, raw: bytes) -> None:
        """Cache ``raw`` without waiting: written with the turn's other fills in one pipeline.

        Skipped while the breaker is open or when ``max_pending_fills`` are already waiting (a
        slow Redis; a skipped fill only costs a later miss). A lost or slow Redis opens the
        breaker; a refusal (``-OOM`` under ``noeviction``, ``-READONLY`` from a replica) does
        not, since reads still work: it is counted and logged at most once a minute.
        """
        if not self.fill_breaker.closed or (raw == NO_LIST and self.negative_ttl == 0):
            return
        if self._fills.pending() >= self.max_pending_fills:
            return
        self._fills.add((self.key(mv, unit_id), raw))

    async def _write_fills(self, fills: list[tuple[str, bytes]]) -> list[None]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, raw in fills:
                    pipe.set(key, raw, ex=self.ttl if raw else self.negative_ttl)
                await pipe.execute()
        except ResponseError as exc:  # Redis answered: it refuses writes, not reads
            self.on_fill_error(len(fills))
            now = time.monotonic()
            if now - self._refusal_logged_at >= 60:
                self._refusal_logged_at = now
                error = f"{type(exc).__name__}: {str(exc)[:200]}"  # the message quotes the value
                log.warning("redis refused cache fills; reads go on", extra={"error": error})
        except REDIS_OUTAGES:
            self.on_fill_error(len(fills))
            self.fill_breaker.trip()
        except (RedisError, UnicodeError):  # refused this pipeline only
            self.on_fill_error(len(fills))
        return [None] * len(fills)

    async def drain(self) -> None:
        """Wait for the reads and fills in flight (at shutdown; tests use it to await a fill)."""
        await self._gets.drain()
        await self._fills.drain()

    async def ping(self) -> None:
        """Raise CacheUnavailable unless Redis answers: the read replica and the primary, each
        named when it is down (ignores the breakers)."""
        sides = [("redis", self.client)]
        if self.reader is not self.client:
            sides = [("redis read replica", self.reader), ("redis primary", self.client)]
        down = []
        for name, client in sides:
            try:
                await client.ping()
            except (TimeoutError, RedisError, OSError) as exc:
                down.append(f"{name}: {type(exc).__name__}")
        if down:
            raise CacheUnavailable("; ".join(down))
