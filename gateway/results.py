"""Where precomputed result lists are read from: Postgres (truth), Redis, and an in-process LRU.

Lists are kept as the JSON bytes stored in Postgres (``[{"id": .., "score": ..}, ...]``) and
cached verbatim in Redis under ``{prefix}r:{model}:{version}:{unit}``: the key carries the model
version, so activating a new version can never serve a stale list. A marker (empty bytes)
caches "this unit has no list" for a shorter TTL so unknown units do not reach Postgres each time.

Point reads are coalesced (gateway/coalesce.py): the units asked for in one event-loop turn
are read with one ``MGET``, one ``unit_id = ANY($3)`` query per model version, and cache fills
written with one pipeline.

Faults are classified at this edge. Only an outage (a connection error or a timeout: the server
is down, unreachable, restarting or too slow) opens a breaker. A server that answers with a data
error (asyncpg ``DataError``, e.g. ``CharacterNotInRepertoireError`` for a NUL) refused that
request's input, not everyone's: the request alone gets ``ResultsStoreRefused`` (and a fallback
answer), the breaker stays closed, and a coalesced batch that holds the bad unit is read again
unit by unit so that its neighbours still get their lists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import asyncpg
import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from experiments import AliasArm, ModelVersion, results_key
from experiments.store import pin_arms, read_aliases
from gateway.coalesce import Coalescer
from gateway.errors import (
    CacheRefused,
    CacheUnavailable,
    ResultsStoreRefused,
    ResultsStoreSkipped,
    ResultsStoreUnavailable,
)

log = logging.getLogger("abgate.gateway")

# What a Postgres call can raise when it fails, for whatever reason.
PG_FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
# The outages among them: the server is down, unreachable, restarting, out of connections, or
# too slow. Only these open the breaker.
PG_OUTAGES = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.OperatorInterventionError,  # class 57: shutdown, cannot connect now, cancelled
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full, memory
)
# A Redis outage: anything else Redis says (an error reply) refuses one command, not all.
REDIS_OUTAGES = (TimeoutError, RedisTimeoutError, RedisConnectionError, OSError)

NO_LIST = b""  # cached marker: the unit has no list in this model version

Items = list[dict[str, object]]


class Breaker:
    """After a failure, tell callers to skip a backend for ``retry_after`` seconds, so that a
    down or hung server does not add its timeout to every request."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self._down_until = 0.0

    @property
    def closed(self) -> bool:
        """True when the backend may be called (no recent failure)."""
        return time.monotonic() >= self._down_until

    def trip(self) -> None:
        """Record a failure: open for ``retry_after`` seconds from now."""
        self._down_until = time.monotonic() + self.retry_after


class ResultsStore(Protocol):
    """The source of truth for result lists."""

    async def get(self, mv: ModelVersion, unit_id: str) -> bytes | None:
        """The unit's list as JSON bytes, or None if the version has no list for it."""
        ...


class ResultsCache(Protocol):
    """A shared cache in front of the store."""

    async def get(self, mv: ModelVersion, unit_id: str) -> bytes | None:
        """Cached bytes (``NO_LIST`` for a known miss), or None when not cached."""
        ...

    def fill(self, mv: ModelVersion, unit_id: str, raw: bytes) -> None:
        """Cache ``raw`` (or the ``NO_LIST`` marker) in the background."""
        ...


class PostgresResultsStore:
    """Result lists, default lists and aliases from Postgres (tables of migration 0001)."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float, retry_after: float = 0.0) -> None:
        self.pool = pool
        self.timeout = timeout
        self.breaker = Breaker(retry_after)
        self._reads: Coalescer[tuple[ModelVersion, str], bytes | ResultsStoreRefused | None] = (
            Coalescer(self._read)
        )

    @property
    def available(self) -> bool:
        """False for ``retry_after`` seconds after a failed read (the breaker is open)."""
        return self.breaker.closed

    async def get(self, mv: ModelVersion, unit_id: str) -> bytes | None:
        """The unit's list, or None. Raises ResultsStoreUnavailable on an outage, and at once
        while the breaker is open: during an outage requests fall back without each waiting
        ``timeout`` for Postgres. Raises ResultsStoreRefused when Postgres refuses this read's
        input (the breaker stays closed)."""
        if not self.available:
            raise ResultsStoreSkipped("postgres: skipped after a recent failure")
        found = await self._reads.get((mv, unit_id))
        if isinstance(found, ResultsStoreRefused):
            raise found
        return found

    async def _read(
        self, keys: list[tuple[ModelVersion, str]]
    ) -> list[bytes | ResultsStoreRefused | None]:
        units: dict[ModelVersion, list[str]] = {}
        for mv, unit_id in keys:
            units.setdefault(mv, []).append(unit_id)
        try:  # the timeout bounds the wait for a pool connection too, not only the query
            async with asyncio.timeout(self.timeout):
                found = await asyncio.gather(
                    *(self._read_version(mv, u) for mv, u in units.items())
                )
        except PG_OUTAGES as exc:
            self.breaker.trip()
            raise ResultsStoreUnavailable(f"postgres: {type(exc).__name__}") from exc
        except asyncpg.DataError as exc:
            if len(keys) == 1:
                raise ResultsStoreRefused(f"postgres refused the read: {exc}") from exc
            return await self._read_one_by_one(keys)  # find the unit at fault; serve the others
        except asyncpg.PostgresError as exc:  # answered, e.g. a missing table: not an outage
            raise ResultsStoreRefused(f"postgres refused the read: {exc}") from exc
        lists: dict[tuple[ModelVersion, str], bytes | ResultsStoreRefused | None] = {
            (mv, unit_id): raw
            for mv, rows in zip(units, found, strict=True)
            for unit_id, raw in rows
        }
        return [lists.get(k) for k in keys]

    async def _read_one_by_one(
        self, keys: list[tuple[ModelVersion, str]]
    ) -> list[bytes | ResultsStoreRefused | None]:
        """Each key read alone: a refused one gets its error, the others their lists."""

        async def one(mv: ModelVersion, unit_id: str) -> bytes | ResultsStoreRefused | None:
            try:
                rows = await self._read_version(mv, [unit_id])
            except asyncpg.DataError as exc:
                return ResultsStoreRefused(f"postgres refused the read: {exc}")
            return rows[0][1] if rows else None

        try:
            async with asyncio.timeout(self.timeout):
                return list(await asyncio.gather(*(one(mv, u) for mv, u in keys)))
        except PG_OUTAGES as exc:
            self.breaker.trip()
            raise ResultsStoreUnavailable(f"postgres: {type(exc).__name__}") from exc
        except asyncpg.PostgresError as exc:
            raise ResultsStoreRefused(f"postgres refused the read: {exc}") from exc

    async def _read_version(self, mv: ModelVersion, units: list[str]) -> list[asyncpg.Record]:
        # convert_to(items::text) hands over the UTF-8 bytes as they are cached and served,
        # without decoding each list into a str and encoding it back.
        rows: list[asyncpg.Record] = await self.pool.fetch(
            """SELECT unit_id, convert_to(items::text, 'UTF8') FROM results
               WHERE model = $1 AND version = $2 AND unit_id = ANY($3::text[])""",
            mv.name,
            mv.version,
            units,
            timeout=self.timeout,
        )
        return rows

    async def default_lists(self, versions: Iterable[ModelVersion]) -> dict[ModelVersion, Items]:
        """Default lists of active ``versions`` (missing or inactive versions are absent)."""
        wanted = list(versions)
        try:
            rows = await self.pool.fetch(
                """SELECT mv.model, mv.version, mv.default_items::text AS items
                   FROM model_versions mv
                   JOIN unnest($1::text[], $2::text[]) AS w(model, version)
                     ON mv.model = w.model AND mv.version = w.version
                   WHERE mv.status = 'active'""",
                [v.name for v in wanted],
                [v.version for v in wanted],
                timeout=self.timeout * 5,
            )
        except PG_FAILURES as exc:
            raise ResultsStoreUnavailable(f"postgres: {type(exc).__name__}") from exc
        return {ModelVersion(r["model"], r["version"]): orjson.loads(r["items"]) for r in rows}

    async def aliases(self) -> dict[tuple[str, str], str]:
        """Every ``(model, alias) -> version``."""
        try:
            return await read_aliases(self.pool, timeout=self.timeout * 5)
        except PG_FAILURES as exc:
            raise ResultsStoreUnavailable(f"postgres: {type(exc).__name__}") from exc

    async def pin_arms(
        self, arms: Iterable[AliasArm], aliases: Mapping[tuple[str, str], str]
    ) -> dict[tuple[str, str], str]:
        """Pin alias arms not pinned yet (experiments/store/pins.py); ``(experiment, variant) -> version``."""
        try:
            pins = await pin_arms(self.pool, arms, aliases, timeout=self.timeout * 5)
        except PG_FAILURES as exc:
            raise ResultsStoreUnavailable(f"postgres: {type(exc).__name__}") from exc
        return {k: p.version for k, p in pins.items()}

    async def ping(self) -> None:
        """Raise ResultsStoreUnavailable unless Postgres answers."""
        try:
            await self.pool.fetchval("SELECT 1", timeout=self.timeout)
        except PG_FAILURES as exc:
            raise ResultsStoreUnavailable(f"postgres: {type(exc).__name__}") from exc


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


def decoded_size(items: Items | None, raw_len: int) -> int:
    """Estimated bytes of a decoded list in memory: ~240 per ``{"id", "score"}`` item (dict,
    float, id string, list slot) plus the JSON length for the ids' characters. Within -5%/+20%
    of what tracemalloc measures for 10- to 500-item lists (tests/gateway/test_units.py)."""
    return 100 if items is None else 240 * len(items) + raw_len


class LocalCache:
    """A bounded in-process LRU of decoded lists.

    Always correct: a model version's results never change once active, and keys carry the
    version. ``None`` entries remember units without a list. Bounded both by entries and by
    estimated memory (``decoded_size``), whichever is reached first.
    """

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries if max_bytes != 0 else 0
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[tuple[str, str, str], tuple[Items | None, int]] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> tuple[bool, Items | None]:
        """``(found, items)``."""
        try:
            value = self._data[key]
        except KeyError:
            return False, None
        self._data.move_to_end(key)
        return True, value[0]

    def put(self, key: tuple[str, str, str], items: Items | None, size: int = 0) -> None:
        """Remember ``items`` (``size`` bytes, see ``decoded_size``) for ``key``, evicting the
        least recently used entries while over a bound."""
        if self.max_entries <= 0:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._data[key] = (items, size)
        self.bytes += size
        data = self._data
        while len(data) > self.max_entries or (
            self.max_bytes is not None and self.bytes > self.max_bytes and len(data) > 1
        ):
            self.bytes -= data.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._data)
