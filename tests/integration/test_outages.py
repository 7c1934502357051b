"""Outages: each test stops a private server of its own, never the machine's shared ones."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from abgate.embedded import RedisProcess
from experiments import ModelVersion
from experiments.settings import Settings
from gateway.backends.redis import RedisResultsCache
from tests.gateway.helpers import load_demo_data, running_app, settings_for, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "redis")
    yield proc
    proc.stop()


@pytest.fixture
def private_postgres() -> Iterator[object]:
    pgserver = pytest.importorskip("pgserver", reason="the embedded extra ships a private Postgres")
    # Not under pytest's 0700 tmp tree: as root, pgserver runs Postgres as its own system user.
    folder = Path(tempfile.mkdtemp(prefix="abgate-pg-"))
    folder.chmod(0o755)
    server = pgserver.get_server(folder / "pg", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


async def test_redis_stopped_mid_test_requests_are_served_from_postgres(
    pg_dsn, schema, experiments_dir, archive_dir, private_redis
):
    await load_demo_data(pg_dsn, schema, units=10)
    write_config(experiments_dir)
    settings = settings_for(
        pg_dsn, private_redis.url, schema, "abgate:", experiments_dir, archive_dir
    )
    async with running_app(settings) as (app, client):
        body = {"surface": "home_top", "unit_id": "u1"}
        assert (await client.post("/v1/recommendations", json=body)).json()["source"] == "db"
        await app.state.abgate.gateway.results.drain()  # the Redis fill runs after the answer
        assert (await client.post("/v1/recommendations", json=body)).json()["source"] == "cache"
        private_redis.stop()
        statuses, sources = set(), set()
        for unit in ("u1", "u2", "u3", "nobody"):
            r = await client.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": unit}
            )
            statuses.add(r.status_code)
            sources.add(r.json()["source"])
        ready = await client.get("/readyz")
        strict = await client.get("/readyz?strict=1")
    assert statuses == {200}
    assert sources == {"db", "fallback"}
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["redis"].startswith("down")
    assert strict.status_code == 503


async def test_postgres_down_cached_units_still_served_others_get_defaults(
    redis_url, redis_prefix, experiments_dir, archive_dir, private_postgres
):
    dsn = private_postgres.get_uri()
    await load_demo_data(dsn, "abgate", units=10)
    write_config(experiments_dir)
    settings = settings_for(
        dsn, redis_url, "abgate", redis_prefix, experiments_dir, archive_dir, postgres_timeout=0.5
    )
    async with running_app(settings) as (app, client):
        warm = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u1"}
        )
        assert warm.json()["source"] == "db"
        await app.state.abgate.gateway.results.drain()  # the Redis fill runs after the answer
        private_postgres.cleanup()  # stops the server
        cached = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u1"}
        )
        uncached = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u2"}
        )
        store = app.state.abgate.gateway.results.store
        assert not store.available  # the breaker: the next misses fall back without waiting
        skipped = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u3"}
        )
        ready = await client.get("/readyz")
    assert cached.status_code == 200 and cached.json()["source"] == "cache"
    assert cached.json()["items"] == warm.json()["items"]
    assert uncached.status_code == 200 and uncached.json()["source"] == "fallback"
    assert uncached.json()["items"][0]["id"].endswith("-default-0")
    assert skipped.status_code == 200 and skipped.json()["source"] == "fallback"
    assert ready.json()["checks"]["postgres"].startswith("down")  # /readyz asks for real


async def test_replica_started_during_postgres_outage_serves_last_known_config(
    redis_url, redis_prefix, archive_dir, private_postgres
):
    from experiments import parse_experiment, parse_surfaces
    from experiments.schema import SurfacesFile
    from experiments.store import PostgresExperimentStore, create_pool
    from tests.gateway.helpers import EXPERIMENT, SURFACES

    dsn = private_postgres.get_uri()
    await load_demo_data(dsn, "abgate", units=10)
    pool = await create_pool(dsn, "abgate")
    try:
        store = PostgresExperimentStore(pool)
        await store.apply_surfaces(SurfacesFile(surfaces=parse_surfaces(SURFACES)), author="t")
        await store.apply(parse_experiment(EXPERIMENT), author="t")
    finally:
        await pool.close()
    settings = settings_for(
        dsn, redis_url, "abgate", redis_prefix, None, archive_dir, postgres_timeout=0.5
    )
    async with running_app(settings) as (_, client):  # a first replica caches config and models
        first = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u1"}
        )
    private_postgres.cleanup()  # Postgres goes away
    async with running_app(settings) as (_, client):
        again = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u1"}
        )
        other = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u2"}
        )
        ready = (await client.get("/readyz")).json()
    assert first.json()["experiment"] == "home-exp"
    assert again.status_code == 200 and again.json()["source"] == "cache"
    assert again.json()["variant"] == first.json()["variant"]
    assert again.json()["items"] == first.json()["items"]
    assert other.status_code == 200 and other.json()["source"] == "fallback"
    assert ready["status"] == "degraded"
    assert ready["config"]["from_disk_cache"] is True
    assert ready["config"]["origin"].startswith("disk-cache:")
    assert ready["checks"]["config"].startswith("stale")


async def test_a_full_redis_refusing_fills_keeps_serving_reads_from_it(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """-OOM under noeviction refuses writes, not reads: no breaker, one warning, counted."""
    client = aioredis.from_url(private_redis.url)
    refused: list[int] = []
    cache = RedisResultsCache(
        client,
        prefix="",
        ttl=60,
        negative_ttl=10,
        retry_after=30,
        on_fill_error=refused.append,
    )
    mv = ModelVersion("m", "1")
    try:
        cache.fill(mv, "cached", b'[{"id": "a"}]')
        await cache.drain()
        await client.config_set("maxmemory", 1)  # below what Redis uses: every write refused
        for unit in ("u1", "u2"):
            cache.fill(mv, unit, b'[{"id": "b"}]')
            await cache.drain()
        assert refused == [1, 1]
        assert cache.available  # the breaker stays closed: Redis still answers reads
        assert await cache.get(mv, "cached") == b'[{"id": "a"}]'
        warnings = [r for r in caplog.records if r.getMessage().startswith("redis refused")]
        assert len(warnings) == 1 and "OutOfMemoryError" in warnings[0].error  # type: ignore[attr-defined]
    finally:
        await client.aclose()


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    """A private Redis primary and a replica of it (real replication)."""
    primary = RedisProcess(tmp_path / "primary")
    replica = RedisProcess(
        tmp_path / "replica", None, "--replicaof", "127.0.0.1", str(primary.port)
    )
    yield primary, replica
    replica.stop()
    primary.stop()


async def _commands(url: str) -> set[str]:
    """The commands a Redis server has run (INFO commandstats)."""
    client = aioredis.from_url(url)
    try:
        return {k.removeprefix("cmdstat_") for k in await client.info("commandstats")}
    finally:
        await client.aclose()


async def _replica_gateway(
    pg_dsn, schema, experiments_dir, archive_dir, primary, replica, **kw
) -> Settings:
    """Demo results and config loaded; settings of a gateway that reads from ``replica`` and
    fills ``primary``."""
    await load_demo_data(pg_dsn, schema, units=10)
    write_config(experiments_dir)
    return settings_for(
        pg_dsn,
        primary.url,
        schema,
        "abgate:",
        experiments_dir,
        archive_dir,
        redis_read_url=replica.url,
        **kw,
    )


async def test_a_read_url_serves_cache_reads_from_the_replica_and_fills_the_primary(
    pg_dsn, schema, experiments_dir, archive_dir, primary_and_replica
):
    primary, replica = primary_and_replica
    settings = await _replica_gateway(
        pg_dsn, schema, experiments_dir, archive_dir, *primary_and_replica
    )
    body = {"surface": "home_top", "unit_id": "u1"}
    async with running_app(settings) as (app, client):
        assert (await client.post("/v1/recommendations", json=body)).json()["source"] == "db"
        await app.state.abgate.gateway.results.drain()  # the fill, on the primary
        writer = aioredis.from_url(primary.url)
        assert await writer.execute_command("WAIT", 1, 5000) == 1  # the replica has it
        await writer.aclose()
        assert (await client.post("/v1/recommendations", json=body)).json()["source"] == "cache"
        assert (await client.get("/readyz")).json()["checks"]["redis"] == "ok"
    on_primary, on_replica = await _commands(primary.url), await _commands(replica.url)
    assert "set" in on_primary and not {"get", "mget"} & on_primary
    assert {"get", "mget"} & on_replica  # (its SETs came by replication)


async def test_a_lost_replica_stops_cache_reads_not_fills_to_the_primary(
    pg_dsn, schema, experiments_dir, archive_dir, primary_and_replica
):
    primary, replica = primary_and_replica
    settings = await _replica_gateway(
        pg_dsn, schema, experiments_dir, archive_dir, *primary_and_replica, redis_retry_after=30
    )
    replica.stop()
    writer = aioredis.from_url(primary.url)
    try:
        async with running_app(settings) as (app, client):
            for unit in ("u1", "u2"):
                r = await client.post(
                    "/v1/recommendations", json={"surface": "home_top", "unit_id": unit}
                )
                assert (r.status_code, r.json()["source"]) == (200, "db")
            gw = app.state.abgate.gateway
            await gw.results.drain()
            assert not gw.results.cache.available  # reads skip the lost replica...
            assert len(await writer.keys("abgate:r:*")) == 2  # ...while fills reach the primary
            ready = (await client.get("/readyz")).json()
        assert ready["checks"]["redis"] == "down: redis read replica: ConnectionError"
    finally:
        await writer.aclose()
