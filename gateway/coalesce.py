"""Coalescing of concurrent lookups: the keys asked for in one event-loop turn, fetched in one call.

Under load many requests reach the read path in the same turn of the event loop (one
``epoll`` wake-up delivers several requests). Fetched one by one, each pays a full client
round: redis-py costs 29–31 µs per ``GET`` with 32 concurrent tasks (pool checkout, command
packing, reply parsing, release), against 3.8–4.6 µs per key in one ``MGET`` of 32
(``python -m loadtests.redis_cost``); asyncpg pays its pool and protocol round per query.
``Coalescer`` gathers the keys asked for during the turn and fetches them with one ``MGET`` or
one ``= ANY($3)`` query on the next turn, the pattern of GraphQL's DataLoader. Under light load
a batch holds one key and the cost is one extra future (~1 µs); under load it is the batch's
call shared by every key in it. Measured on the gateway: 65 → 29 µs of CPU per request on the
Redis path (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """``await get(key)`` answers from ``fetch(keys)``, called once per loop turn and batch.

    ``fetch`` returns one value per key, in order. If it raises, every waiter of that batch
    gets the exception. A waiter that is cancelled meanwhile is skipped. ``add(key)`` joins a
    batch without waiting (fire and forget: ``fetch`` must then handle its own errors).
    """

    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[Sequence[V]]], *, max_batch: int = 128
    ) -> None:
        self.fetch = fetch
        self.max_batch = max_batch
        self._keys: list[K] = []
        self._waiters: list[asyncio.Future[V] | None] = []
        self._running: set[asyncio.Task[None]] = set()

    def get(self, key: K) -> asyncio.Future[V]:
        """A future of the value of ``key`` (await it)."""
        waiter: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._join(key, waiter)
        return waiter

    def add(self, key: K) -> None:
        """Put ``key`` in the next batch without waiting for its value."""
        self._join(key, None)

    def pending(self) -> int:
        """Keys waiting for their batch plus batches in flight."""
        return len(self._keys) + len(self._running)

    def _join(self, key: K, waiter: asyncio.Future[V] | None) -> None:
        if not self._keys:
            asyncio.get_running_loop().call_soon(self._dispatch)
        self._keys.append(key)
        self._waiters.append(waiter)
        if len(self._keys) >= self.max_batch:
            self._dispatch()

    def _dispatch(self) -> None:
        if not self._keys:
            return  # dispatched early when the batch filled up
        keys, waiters = self._keys, self._waiters
        self._keys, self._waiters = [], []
        task = asyncio.get_running_loop().create_task(self._run(keys, waiters))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, keys: list[K], waiters: list[asyncio.Future[V] | None]) -> None:
        try:
            values = await self.fetch(keys)
        except BaseException as exc:  # fanned out to the waiters, who handle it
            for w in waiters:
                if w is not None and not w.done():
                    w.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for w, v in zip(waiters, values, strict=True):
            if w is not None and not w.done():
                w.set_result(v)

    async def drain(self) -> None:
        """Wait for the batches in flight."""
        self._dispatch()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
