"""The tiered lookup of a unit's list: in-process cache, then the shared cache, then the store.

``TieredLookup.lookup`` answers with the unit's list and where it came from (``cache`` or
``db``), or None when the version has no list for the unit or no backend could tell; it never
raises for a backend failure. The backends are typed by the small ``ResultsStore`` and
``ResultsCache`` Protocols below (implemented by gateway/backends/).
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Protocol

import orjson

from experiments import ModelVersion
from gateway.errors import (
    CacheRefused,
    CacheUnavailable,
    ResultsStoreRefused,
    ResultsStoreSkipped,
    ResultsStoreUnavailable,
)
from gateway.local_cache import LocalCache, decoded_size
from gateway.metrics import Metrics
from gateway.throttle import Throttled

log = logging.getLogger("abgate.gateway")

Items = list[dict[str, object]]  # a result list: ``[{"id": .., "score": ..}, ...]``, decoded

NO_LIST = b""  # cached marker: the unit has no list in this model version


class ResultsStore(Protocol):
    """The source of truth for result lists (gateway/backends/postgres.py)."""

    async def get(self, mv: ModelVersion, unit_id: str) -> bytes | None:
        """The unit's list as JSON bytes, or None if the version has no list for it. Raises
        ResultsStoreUnavailable on an outage, ResultsStoreRefused when this read is refused."""
        ...

    async def ping(self) -> None:
        """Raise ResultsStoreUnavailable unless the store answers."""
        ...


class ResultsCache(Protocol):
    """A shared cache in front of the store (gateway/backends/redis.py)."""

    async def get(self, mv: ModelVersion, unit_id: str) -> bytes | None:
        """Cached bytes (``NO_LIST`` for a known miss), or None when not cached. Raises
        CacheUnavailable on an outage, CacheRefused when this read is refused."""
        ...

    def fill(self, mv: ModelVersion, unit_id: str, raw: bytes) -> None:
        """Cache ``raw`` (or the ``NO_LIST`` marker) in the background, never raising."""
        ...

    async def drain(self) -> None:
        """Wait for the reads and fills in flight."""
        ...

    async def ping(self) -> None:
        """Raise CacheUnavailable unless the cache answers."""
        ...


class Lookup(NamedTuple):
    """A unit's list and its source; ``items`` is None when there is no list to serve."""

    items: Items | None
    source: str  # "cache", "db", or "none" (no list) / "unavailable" (no backend answered)


class TieredLookup:
    """Reads a unit's list through the cache layers; never raises for a backend failure."""

    def __init__(
        self,
        local: LocalCache[Items],
        cache: ResultsCache,
        store: ResultsStore,
        metrics: Metrics,
    ) -> None:
        self.local = local
        self.cache = cache
        self.store = store
        self.metrics = metrics
        # A flood of refused reads (hostile input) must not flood the log: one line a minute.
        self._refusals = Throttled(log, "read refused by a backend; this request falls back")

    async def lookup(self, mv: ModelVersion, unit_id: str) -> Lookup:
        """The unit's list in ``mv``."""
        key = (mv.name, mv.version, unit_id)
        found, items = self.local.get(key)
        if found:
            self.metrics.lookup["local", "hit"].inc()
            return Lookup(items, "cache")
        if self.local.max_entries:
            self.metrics.lookup["local", "miss"].inc()
        try:
            raw = await self.cache.get(mv, unit_id)
        except CacheUnavailable:
            self.metrics.lookup["redis", "error"].inc()
            raw = None
            redis_ok = False
        except CacheRefused as exc:  # this key only: ask the store
            self.metrics.lookup["redis", "error"].inc()
            self._refusals.note(str(exc))
            raw = None
            redis_ok = False
        else:
            redis_ok = True
        if raw is not None:
            self.metrics.lookup["redis", "hit"].inc()
            items = self._remember(key, raw if raw != NO_LIST else None)
            return Lookup(items, "cache")
        if redis_ok:
            self.metrics.lookup["redis", "miss"].inc()
        try:
            raw = await self.store.get(mv, unit_id)
        except ResultsStoreUnavailable as exc:
            self.metrics.store_errors.inc()
            if not isinstance(exc, ResultsStoreSkipped):  # one line per failure, not per skip
                log.warning("results store unavailable", extra={"error": str(exc)})
            return Lookup(None, "unavailable")
        except ResultsStoreRefused as exc:  # this request only; the breaker stays closed
            self.metrics.store_errors.inc()
            self._refusals.note(str(exc))
            return Lookup(None, "unavailable")
        # In the background: the answer does not wait for Redis. Also after a failed read: the
        # cache skips fills itself while its (fill) breaker is open, and fills to a primary go
        # on while a read replica is down.
        self.cache.fill(mv, unit_id, raw if raw is not None else NO_LIST)
        items = self._remember(key, raw)
        return Lookup(items, "db" if items is not None else "none")

    def _remember(self, key: tuple[str, str, str], raw: bytes | None) -> Items | None:
        """Decode a list (None: the unit has none) and keep it in the in-process cache."""
        items = orjson.loads(raw) if raw is not None else None
        self.local.put(key, items, decoded_size(items, len(raw or b"")))
        return items

    async def drain(self) -> None:
        """Wait for the pending cache fills (at shutdown; tests use it to await a fill)."""
        await self.cache.drain()
