"""The lifespan: injected backends are used and left open; the typed state follows the run."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from experiments.store import create_pool
from gateway import create_app
from gateway.backends.postgres import PostgresResultsStore
from gateway.backends.redis import RedisResultsCache
from tests.gateway.helpers import running_app

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nothing"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


async def test_injected_store_and_cache_serve_and_stay_open(
    gateway_settings, pg_dsn, schema, redis_url, redis_prefix
) -> None:
    # The settings point at no server: an answer from the database proves the injected
    # backends served it.
    settings = gateway_settings.model_copy(
        update={"postgres_dsn": UNREACHABLE_PG, "redis_url": UNREACHABLE_REDIS}
    )
    pool = await create_pool(pg_dsn, schema)
    client = aioredis.from_url(redis_url)
    store = PostgresResultsStore(pool, timeout=2.0)
    cache = RedisResultsCache(client, prefix=redis_prefix, ttl=60, negative_ttl=10, retry_after=1)
    try:
        async with running_app(settings, store=store, cache=cache) as (app, http):
            answer = await http.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": "u1"}
            )
            await app.state.abgate.gateway.results.drain()
            ready = (await http.get("/readyz")).json()
        assert answer.status_code == 200, answer.text
        assert answer.json()["source"] == "db"
        assert ready["checks"]["postgres"] == "ok" and ready["checks"]["redis"] == "ok"
        assert await client.keys(f"{redis_prefix}r:*:u1")  # filled through the injected cache
        assert await pool.fetchval("SELECT 1") == 1  # not closed by the app
        assert await client.ping()
    finally:
        await client.aclose()
        await pool.close()


async def test_the_state_names_the_gateway_only_while_the_lifespan_runs(
    gateway_settings,
) -> None:
    app = create_app(gateway_settings)
    state = app.state.abgate
    with pytest.raises(RuntimeError, match="not running"):
        state.running()
    async with app.router.lifespan_context(app):
        assert state.running() is state.gateway
        assert state.source is not None
    assert state.gateway is None and state.source is None
