"""The read path: in-process cache, then Redis, then Postgres, then the fallback chain.

``ReadPath.lookup`` answers with the unit's list and where it came from (``cache`` or ``db``),
or None when the version has no list for the unit or no backend could tell.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import orjson

from experiments import ModelVersion
from gateway.errors import (
    CacheRefused,
    CacheUnavailable,
    ResultsStoreRefused,
    ResultsStoreSkipped,
    ResultsStoreUnavailable,
)
from gateway.metrics import Metrics
from gateway.results import (
    NO_LIST,
    Items,
    LocalCache,
    PostgresResultsStore,
    RedisResultsCache,
    decoded_size,
)
from gateway.throttle import Throttled

log = logging.getLogger("abgate.gateway")


class Lookup(NamedTuple):
    """A unit's list and its source; ``items`` is None when there is no list to serve."""

    items: Items | None
    source: str  # "cache", "db", or "none" (no list) / "unavailable" (no backend answered)


class ReadPath:
    """Reads a unit's list through the cache layers; never raises for a backend failure."""

    def __init__(
        self,
        local: LocalCache,
        cache: RedisResultsCache,
        store: PostgresResultsStore,
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
        except CacheRefused as exc:  # this key only: ask Postgres
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


def filter_items(items: Items, exclude: frozenset[str], limit: int) -> Items:
    """The first ``limit`` items whose id is not excluded, in stored order (back-filled)."""
    if not exclude:
        return items[:limit]
    out: Items = []
    for it in items:
        if it["id"] not in exclude:
            out.append(it)
            if len(out) == limit:
                break
    return out
