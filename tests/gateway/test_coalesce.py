"""Coalesced reads: one fetch per event-loop turn, errors to every waiter, real Redis and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from batch import load_results
from experiments import ModelVersion
from experiments.store import create_pool
from gateway.backends.postgres import PostgresResultsStore
from gateway.backends.redis import RedisResultsCache
from gateway.coalesce import Coalescer
from gateway.errors import CacheUnavailable, ResultsStoreUnavailable
from gateway.lookup import NO_LIST
from tests.batch.conftest import version_rows


class Recorder:
    """A fetch function that records its batches and answers ``key * 10``."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, keys: list[int]) -> list[int]:
        self.batches.append(list(keys))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [k * 10 for k in keys]


async def test_keys_of_one_turn_share_one_fetch_and_get_their_own_value() -> None:
    fetch = Recorder()
    c = Coalescer(fetch)
    assert await asyncio.gather(*(c.get(k) for k in range(5))) == [0, 10, 20, 30, 40]
    assert fetch.batches == [[0, 1, 2, 3, 4]]
    assert await c.get(7) == 70  # a later turn: a batch of its own
    assert fetch.batches[-1] == [7]


async def test_a_full_batch_goes_at_once() -> None:
    fetch = Recorder()
    c = Coalescer(fetch, max_batch=3)
    assert await asyncio.gather(*(c.get(k) for k in range(7))) == [k * 10 for k in range(7)]
    assert fetch.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_fetch_reaches_every_waiter() -> None:
    c = Coalescer(Recorder(fail=OSError("down")))
    results = await asyncio.gather(*(c.get(k) for k in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [OSError] * 3


async def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    fetch = Recorder()
    fetch.release.clear()
    c = Coalescer(fetch)
    gone = asyncio.ensure_future(c.get(1))
    kept = asyncio.ensure_future(c.get(2))
    await asyncio.sleep(0)  # the batch is dispatched and waits for release
    await asyncio.sleep(0)
    gone.cancel()
    fetch.release.set()
    assert await kept == 20
    assert gone.cancelled()
    assert fetch.batches == [[1, 2]]


async def test_add_joins_a_batch_without_waiting_and_drain_awaits_it() -> None:
    fetch = Recorder()
    c = Coalescer(fetch)
    c.add(1)
    c.add(2)
    assert c.pending() == 2
    await c.drain()
    assert fetch.batches == [[1, 2]]
    assert c.pending() == 0


class CountingRedis(aioredis.Redis):
    """The real client, recording the name of each command it sends."""

    commands: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return await super().execute_command(*args, **options)


@pytest.fixture
async def counting_redis(redis_url: str) -> AsyncIterator[CountingRedis]:
    client = CountingRedis.from_url(redis_url)
    client.commands = []
    yield client
    await client.aclose()


async def test_concurrent_cache_reads_are_one_mget(
    counting_redis: CountingRedis, redis_prefix: str
) -> None:
    cache = RedisResultsCache(
        counting_redis, prefix=redis_prefix, ttl=60, negative_ttl=10, retry_after=1
    )
    mv = ModelVersion("m", "1")
    for u in ("a", "b"):
        cache.fill(mv, u, f'[{{"id": "{u}"}}]'.encode())
    cache.fill(mv, "none", NO_LIST)
    await cache.drain()
    assert counting_redis.commands == []  # the fills went as one pipeline, not command by command
    got = await asyncio.gather(*(cache.get(mv, u) for u in ("a", "b", "none", "missing", "a")))
    assert got == [b'[{"id": "a"}]', b'[{"id": "b"}]', NO_LIST, None, b'[{"id": "a"}]']
    assert counting_redis.commands == ["MGET"]
    assert await counting_redis.ttl(cache.key(mv, "none")) <= 10


async def test_a_failed_mget_opens_the_breaker_for_every_waiter(redis_prefix: str) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    cache = RedisResultsCache(dead, prefix=redis_prefix, ttl=60, negative_ttl=10, retry_after=30)
    mv = ModelVersion("m", "1")
    results = await asyncio.gather(*(cache.get(mv, u) for u in "abc"), return_exceptions=True)
    assert [type(r) for r in results] == [CacheUnavailable] * 3
    assert not cache.available
    await dead.aclose()


async def test_concurrent_store_reads_across_versions_answer_each_unit(
    pool: asyncpg.Pool,
) -> None:
    await load_results(pool, iter(version_rows("1", units=20)), "m", "1")
    await load_results(pool, iter(version_rows("2", units=20)), "m", "2")
    store = PostgresResultsStore(pool, timeout=5)
    v1, v2 = ModelVersion("m", "1"), ModelVersion("m", "2")
    asked = [(v1, "u3"), (v2, "u3"), (v1, "nobody"), (v2, "u19"), (v1, "u3")]
    got = await asyncio.gather(*(store.get(mv, u) for mv, u in asked))
    one_by_one = []
    for mv, u in asked:
        one_by_one.append(
            await pool.fetchval(
                "SELECT convert_to(items::text, 'UTF8') FROM results"
                " WHERE model = $1 AND version = $2 AND unit_id = $3",
                mv.name,
                mv.version,
                u,
            )
        )
    assert got == one_by_one
    assert got[0] is not None and got[0] != got[1]  # the versions hold different lists
    assert got[2] is None


async def test_a_failed_store_read_reaches_every_waiter_and_opens_the_breaker(
    pool: asyncpg.Pool,
) -> None:
    store = PostgresResultsStore(pool, timeout=5, retry_after=60)
    await pool.close()
    mv = ModelVersion("m", "1")
    results = await asyncio.gather(*(store.get(mv, u) for u in "ab"), return_exceptions=True)
    assert [type(r) for r in results] == [ResultsStoreUnavailable] * 2
    assert not store.available
    with pytest.raises(ResultsStoreUnavailable, match="skipped"):
        await store.get(mv, "c")
    closed = PostgresResultsStore(pool, timeout=5)  # no breaker: every read tries
    with pytest.raises(ResultsStoreUnavailable, match="InterfaceError"):
        await closed.get(mv, "c")
    assert closed.available


async def test_the_store_timeout_bounds_the_wait_for_a_pool_connection(
    pg_dsn: str, schema: str
) -> None:
    small = await create_pool(pg_dsn, schema, min_size=1, max_size=1)
    try:
        store = PostgresResultsStore(small, timeout=0.2)
        async with small.acquire():  # every connection busy
            with pytest.raises(ResultsStoreUnavailable, match="TimeoutError"):
                await asyncio.wait_for(store.get(ModelVersion("m", "1"), "u1"), 5)
    finally:
        await small.close()
