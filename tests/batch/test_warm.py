"""Warm-up writes exactly what the gateway would cache: same key, same bytes, same TTL."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from abgate.cli import app
from abgate.embedded import RedisProcess
from batch import VersionError, WarmError, load_results, recent_units, warm
from batch.warm import _page_ranges
from experiments import ModelVersion, archive_path, results_key
from gateway.backends.postgres import PostgresResultsStore
from gateway.backends.redis import RedisResultsCache
from tests.batch.conftest import version_rows
from tests.gateway.helpers import load_demo_data, running_app, settings_for, write_config


async def test_warm_writes_the_gateways_key_and_bytes(
    pool: asyncpg.Pool, redis_url: str, redis_prefix: str
) -> None:
    await load_results(pool, iter(version_rows("1", units=30)), "m", "1")
    mv = ModelVersion("m", "1")
    client = aioredis.from_url(redis_url)
    try:
        summary = await warm(pool, client, mv, prefix=redis_prefix, ttl=600, chunk=7)
        assert summary.keys == 30
        gateway_cache = RedisResultsCache(
            client, prefix=redis_prefix, ttl=600, negative_ttl=60, retry_after=1
        )
        store = PostgresResultsStore(pool, timeout=2)
        for unit in ("u0", "u17", "u29"):
            assert results_key(redis_prefix, mv, unit) == gateway_cache.key(mv, unit)
            assert await gateway_cache.get(mv, unit) == await store.get(mv, unit)
            assert 590 < await client.ttl(gateway_cache.key(mv, unit)) <= 600
        assert await client.exists(results_key(redis_prefix, mv, "__default__")) == 0
    finally:
        await client.aclose()


async def test_parallel_workers_write_every_unit_once_with_its_utf8_bytes(
    pool: asyncpg.Pool, redis_url: str, redis_prefix: str
) -> None:
    rows = version_rows("1", units=400)
    rows[3] = ("ünit-3", [{"id": "crème-brûlée", "score": 1.0}, {"id": "日本", "score": 0.5}])
    await load_results(pool, iter(rows), "m", "1")
    mv = ModelVersion("m", "1")
    client = aioredis.from_url(redis_url)
    try:
        summary = await warm(pool, client, mv, prefix=redis_prefix, ttl=600, chunk=9, workers=3)
        assert summary.keys == 400
        keys = [k async for k in client.scan_iter(match=results_key(redis_prefix, mv, "*"))]
        assert len(keys) == 400
        store = PostgresResultsStore(pool, timeout=2)
        gateway_cache = RedisResultsCache(
            client, prefix=redis_prefix, ttl=600, negative_ttl=60, retry_after=1
        )
        for unit, _ in rows[:-1]:
            assert await gateway_cache.get(mv, unit) == await store.get(mv, unit), unit
        raw = await client.get(results_key(redis_prefix, mv, "ünit-3"))
        assert orjson.loads(raw) == rows[3][1]
    finally:
        await client.aclose()


async def test_only_an_active_version_is_warmed(
    pool: asyncpg.Pool, redis_url: str, redis_prefix: str
) -> None:
    await load_results(pool, iter(version_rows("2")), "m", "2", activate=False)
    client = aioredis.from_url(redis_url)
    try:
        for version, state in (("2", "not loaded"), ("3", "not loaded")):
            with pytest.raises(VersionError, match=f"models:/m/{version} is {state}"):
                await warm(pool, client, ModelVersion("m", version), prefix=redis_prefix, ttl=60)
    finally:
        await client.aclose()


def test_page_ranges_cover_the_table_without_overlap() -> None:
    ranges = _page_ranges(pages=100, units=600, chunk=50)  # 6 units a page: 8 pages a range
    assert ranges[0][0] == (0, 0) and ranges[1][0] == (8, 0)
    assert all(a[1] == b[0] for a, b in pairwise(ranges))
    assert ranges[-1][1] == (2**32 - 1, 0)  # open-ended: pages added since are read too
    assert _page_ranges(pages=0, units=0, chunk=50) == [((0, 0), (2**32 - 1, 0))]


async def test_warm_top_units_from_a_file(
    pool: asyncpg.Pool, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    await load_results(pool, iter(version_rows("1", units=30)), "m", "1")
    recent = tmp_path / "recent.txt"
    recent.write_text("u5\nu9\nu5\nnobody\nu1\n")
    units = recent_units(recent, 3)
    assert units == ["u5", "u9", "nobody"]
    client = aioredis.from_url(redis_url)
    try:
        s = await warm(
            pool, client, ModelVersion("m", "1"), prefix=redis_prefix, ttl=60, units=units
        )
        assert (s.keys, s.missing) == (2, 1)
    finally:
        await client.aclose()


def _write_archive(root: Path, exposures: list[tuple[str, str]]) -> None:
    """Exposure LogEntry lines (unit, ts) in the export layout, plus an outcome and a bad line."""
    for unit, ts in exposures:
        path = archive_path(root, "abgate-events", ts)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as f:
            payload = {"type": "exposure", "unit_id": unit, "ts": ts}
            f.write(orjson.dumps({"jsonPayload": payload}) + b"\n")
            outcome = {"type": "outcome", "unit_id": "buyer", "ts": ts}
            f.write(orjson.dumps({"jsonPayload": outcome}) + b"\nnot json\n")


def test_recent_units_read_an_archive_newest_hour_first_and_stop_when_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_archive(
        tmp_path,
        [
            ("u4", "2026-11-26T10:00:00.000000Z"),
            ("u1", "2026-11-26T11:00:00.000000Z"),
            ("u3", "2026-11-26T11:30:00.000000Z"),
            ("u2", "2026-11-26T12:01:00.000000Z"),
            ("u1", "2026-11-26T12:05:00.000000Z"),
            ("u5", "2026-11-25T23:59:59.000000Z"),  # the day before: another folder
        ],
    )
    module = importlib.import_module("batch.warm")  # `batch.warm` is also the function
    read: list[str] = []
    scan = module._scan_exposures

    def spy(path: Path, latest: dict[str, str]) -> None:
        read.append(path.name[:2])
        scan(path, latest)

    monkeypatch.setattr(module, "_scan_exposures", spy)
    assert recent_units(tmp_path, 2) == ["u1", "u2"]
    assert read == ["12"]  # the newest hour had enough
    read.clear()
    assert recent_units(tmp_path, 3) == ["u1", "u2", "u3"]
    assert read == ["12", "11"]
    read.clear()
    assert recent_units(tmp_path, 10) == ["u1", "u2", "u3", "u4", "u5"]
    assert read == ["12", "11", "10", "23"]
    (tmp_path / "copied-by-hand.json").write_bytes(b"")  # not the export layout: read it all
    read.clear()
    assert recent_units(tmp_path, 2) == ["u1", "u2"]
    assert len(read) == 5


async def test_the_gateway_serves_warmed_lists_from_the_cache(
    pg_dsn: str,
    redis_url: str,
    schema: str,
    redis_prefix: str,
    experiments_dir: Path,
    archive_dir: Path,
) -> None:
    await load_demo_data(pg_dsn, schema)
    write_config(experiments_dir, experiment=None)
    pool = await asyncpg.create_pool(
        pg_dsn, server_settings={"search_path": schema}, min_size=1, max_size=2
    )
    client = aioredis.from_url(redis_url)
    try:
        await warm(pool, client, ModelVersion("home_recs", "1"), prefix=redis_prefix, ttl=600)
        settings = settings_for(
            pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir
        )
        async with running_app(settings) as (_, http):
            r = await http.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": "u7", "limit": 5}
            )
        body = orjson.loads(r.content)
        assert body["source"] == "cache"
        assert [i["id"] for i in body["items"]] == [f"home_recs-v1-u7-{k}" for k in range(5)]
    finally:
        await client.aclose()
        await pool.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, which it may fill up or stop."""
    proc = RedisProcess(tmp_path / "redis")
    yield proc
    proc.stop()


async def _assert_written_keys_are_whole(
    pool: asyncpg.Pool, client: aioredis.Redis, mv: ModelVersion
) -> int:
    """Every key in ``client``'s Redis holds the gateway's bytes of its unit; returns how many."""
    store = PostgresResultsStore(pool, timeout=2)
    cache = RedisResultsCache(client, prefix="", ttl=600, negative_ttl=60, retry_after=1)
    keys = [k.decode() async for k in client.scan_iter(match=results_key("", mv, "*"))]
    for key in keys:
        unit = key.removeprefix(results_key("", mv, ""))
        assert await cache.get(mv, unit) == await store.get(mv, unit), unit
    return len(keys)


async def _assert_every_connection_comes_back(pool: asyncpg.Pool) -> None:
    """The pool can hand out all its connections at once: no worker kept one. (A cancelled
    worker's release may finish just after the warm-up returns: asyncpg shields it.)"""
    async with contextlib.AsyncExitStack() as stack:
        held = [
            await stack.enter_async_context(pool.acquire(timeout=5))
            for _ in range(pool.get_max_size())
        ]
        assert all([await c.fetchval("SELECT 1") == 1 for c in held])


async def test_a_redis_that_refuses_writes_stops_every_worker_with_its_reason(
    pool: asyncpg.Pool, private_redis: RedisProcess
) -> None:
    await load_results(pool, iter(version_rows("1", units=400, n=50)), "m", "1")  # ~1.5 KB lists
    mv = ModelVersion("m", "1")
    client = aioredis.from_url(private_redis.url)
    try:
        used = (await client.info("memory"))["used_memory"]
        await client.config_set("maxmemory", used + 300_000)  # room for about a third of them
        await client.config_set("maxmemory-policy", "noeviction")
        oom = r"stopped after at least [\d,]+ keys: redis refused a write: -OOM command not "
        oom += r"allowed when used memory > 'maxmemory'\. The keys"  # the whole error line
        with pytest.raises(WarmError, match=oom) as one:  # one worker: the count is exact
            await warm(pool, client, mv, prefix="", ttl=600, chunk=50, workers=1)
        written = await _assert_written_keys_are_whole(pool, client, mv)
        assert 0 < written < 400 and one.value.keys == written
        await client.flushdb()
        with pytest.raises(WarmError, match=oom) as three:
            await warm(pool, client, mv, prefix="", ttl=600, chunk=9, workers=3)
        written = await _assert_written_keys_are_whole(pool, client, mv)
        assert 0 < three.value.keys <= written < 400  # others' pipelines in flight may add some
        await _assert_every_connection_comes_back(pool)
    finally:
        await client.aclose()


async def test_redis_lost_mid_warm_up_is_reported_with_the_keys_written(
    pool: asyncpg.Pool, private_redis: RedisProcess
) -> None:
    await load_results(pool, iter(version_rows("1", units=400)), "m", "1")
    mv = ModelVersion("m", "1")
    client = aioredis.from_url(private_redis.url)
    written: list[int] = []

    class StopRedisAfterFirstChunks:
        def update(self, *, units: int, items: int, done: int) -> None:
            written.append(done)
            if len(written) == 3:
                private_redis.stop()

    try:
        with pytest.raises(WarmError) as caught:
            await warm(
                pool,
                client,
                mv,
                prefix="",
                ttl=600,
                chunk=9,
                workers=2,
                progress=StopRedisAfterFirstChunks(),
            )
    finally:
        await client.aclose()
    message = str(caught.value)
    assert f"redis at 127.0.0.1:{private_redis.port}" in message, message
    assert caught.value.keys >= written[2] > 0  # the keys Redis confirmed before it stopped
    assert "run the warm-up again" in message
    await _assert_every_connection_comes_back(pool)


async def test_the_cli_warms_with_its_workers_and_ttl(
    pg_dsn: str, schema: str, pool: asyncpg.Pool, redis_url: str, redis_prefix: str
) -> None:
    await load_results(pool, iter(version_rows("1", units=30)), "m", "1")
    env = {
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "ABGATE_REDIS_URL": redis_url,
        "ABGATE_REDIS_PREFIX": redis_prefix,
        "COLUMNS": "200",
    }
    args = ["batch", "warm", "--model", "m", "--version", "1", "--ttl", "120", "--workers", "2"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "warmed 30 keys" in result.output
    client = aioredis.from_url(redis_url)
    try:
        key = results_key(redis_prefix, ModelVersion("m", "1"), "u29")
        assert orjson.loads(await client.get(key)) == version_rows("1", units=30)[29][1]
        assert 110 < await client.ttl(key) <= 120
    finally:
        await client.aclose()


async def test_a_refused_login_is_named_and_its_connection_closed(
    pool: asyncpg.Pool, private_redis: RedisProcess
) -> None:
    await load_results(pool, iter(version_rows("1")), "m", "1")
    wrong = aioredis.from_url(private_redis.url.replace("redis://", "redis://:wrong@"))
    admin = aioredis.from_url(private_redis.url)
    try:
        with pytest.raises(WarmError, match=r"redis refused the login: -(WRONGPASS|ERR AUTH) .+\."):
            await warm(pool, wrong, ModelVersion("m", "1"), prefix="", ttl=60, workers=2)
        clients = await admin.client_list()
        assert len(clients) == 1  # only this one: the warm-up closed its connections
    finally:
        await wrong.aclose()
        await admin.aclose()


async def test_the_cli_names_an_unreachable_redis_without_a_traceback(
    pg_dsn: str, schema: str, pool: asyncpg.Pool
) -> None:
    await load_results(pool, iter(version_rows("1")), "m", "1")
    env = {
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "ABGATE_REDIS_URL": "redis://127.0.0.1:1/0",
        "COLUMNS": "200",
    }
    args = ["batch", "warm", "--model", "m", "--version", "1"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)  # it runs its own loop
    assert result.exit_code == 1, result.output
    assert "cannot connect to redis at 127.0.0.1:1" in result.output
    assert "Traceback" not in result.output


async def test_the_cli_names_an_unreachable_postgres_and_a_missing_activity_file(
    pg_dsn: str, schema: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    args = ["batch", "warm", "--model", "m", "--version", "1"]
    env = {"ABGATE_POSTGRES_DSN": "postgresql://postgres@127.0.0.1:1/test", "COLUMNS": "200"}
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    assert result.exit_code == 3, result.output  # unreachable: 3, as every command
    assert "cannot reach Postgres: ConnectionRefusedError" in result.output
    assert "Traceback" not in result.output
    env = {"ABGATE_POSTGRES_DSN": pg_dsn, "ABGATE_POSTGRES_SCHEMA": schema, "COLUMNS": "200"}
    missing = tmp_path / "nope.txt"
    more = ["--top", "10", "--activity", str(missing)]
    result = await asyncio.to_thread(CliRunner().invoke, app, args + more, env=env)
    assert result.exit_code == 1, result.output
    assert f"{missing}: no such file or folder of recent units" in result.output.replace("\n", "")


async def test_warm_through_a_unix_socket_url(pool: asyncpg.Pool, tmp_path: Path) -> None:
    socket = tmp_path / "redis.sock"
    server = RedisProcess(tmp_path / "redis", None, "--unixsocket", str(socket))
    client = aioredis.from_url(f"unix://{socket}?db=3")
    try:
        await load_results(pool, iter(version_rows("1", units=30)), "m", "1")
        summary = await warm(pool, client, ModelVersion("m", "1"), prefix="", ttl=60)
        assert summary.keys == 30 and await client.dbsize() == 30  # in db 3, by the socket
    finally:
        await client.aclose()
        server.stop()
