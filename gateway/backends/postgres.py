"""The Postgres results store: result lists, default lists, aliases and arm pins.

The source of truth (tables of migration 0001). Lists are read as the JSON bytes stored in
Postgres (``[{"id": .., "score": ..}, ...]``) and handed on verbatim to the cache. Point reads
are coalesced (gateway/coalesce.py): the units asked for in one event-loop turn are read with one
``unit_id = ANY($3)`` query per model version.

Faults are classified at this edge. Only an outage (a connection error or a timeout: the server
is down, unreachable, restarting or too slow) opens the breaker. A server that answers with a
data error (asyncpg ``DataError``, e.g. ``CharacterNotInRepertoireError`` for a NUL) refused that
request's input, not everyone's: the request alone gets ``ResultsStoreRefused`` (and a fallback
answer), the breaker stays closed, and a coalesced batch that holds the bad unit is read again
unit by unit so that its neighbours still get their lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import asyncpg
import orjson

from experiments import AliasArm, ModelVersion
from experiments.settings import Settings
from experiments.store import create_pool, pin_arms, read_aliases
from gateway.breaker import Breaker
from gateway.coalesce import Coalescer
from gateway.errors import ResultsStoreRefused, ResultsStoreSkipped, ResultsStoreUnavailable
from gateway.lookup import Items

# What a Postgres call can raise when it fails, for whatever reason.
# asyncpg raises InternalClientError ("cannot switch to state …") on a connection whose backend
# the server terminated before asyncpg saw it close (MagicStack/asyncpg#1069): a lost connection.
PG_FAILURES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
# The outages among them: the server is down, unreachable, restarting, out of connections, or
# too slow. Only these open the breaker.
PG_OUTAGES = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a terminated backend, seen late (above)
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.OperatorInterventionError,  # class 57: shutdown, cannot connect now, cancelled
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full, memory
)


class PostgresResultsStore:
    """Result lists, default lists and aliases from Postgres (tables of migration 0001)."""

    def __init__(self, pool: asyncpg.Pool, *, timeout: float, retry_after: float = 0.0) -> None:
        self.pool = pool
        self.timeout = timeout
        self.breaker = Breaker(retry_after)
        self._reads: Coalescer[tuple[ModelVersion, str], bytes | ResultsStoreRefused | None] = (
            Coalescer(self._read)
        )

    @classmethod
    async def connect(cls, settings: Settings, *, lazy: bool = False) -> PostgresResultsStore:
        """A store on a new pool sized and timed by ``settings``. ``lazy``: connect at the first
        query, for a replica that starts while Postgres is down. Raises ResultsStoreUnavailable
        when Postgres cannot be reached."""
        dsn, schema = settings.postgres_dsn or "", settings.postgres_schema
        try:
            pool = await create_pool(
                dsn,
                schema,
                min_size=0 if lazy else settings.postgres_pool_min,
                max_size=settings.postgres_pool_max,
                command_timeout=settings.postgres_timeout * 5,
                prepare=not lazy,
            )
        except PG_FAILURES as exc:
            raise ResultsStoreUnavailable(f"postgres: {type(exc).__name__}: {exc}") from exc
        return cls(
            pool, timeout=settings.postgres_timeout, retry_after=settings.postgres_retry_after
        )

    async def aclose(self) -> None:
        """Close the pool."""
        await self.pool.close()

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
