"""Shared fixtures: real Postgres and Redis (the machine's when reachable, embedded otherwise).

Each test gets its own Postgres schema and Redis key prefix, so tests run in any order and in
parallel with other users of the same servers. Set ABGATE_TEST_POSTGRES_DSN / ABGATE_TEST_REDIS_URL
to point the suite elsewhere.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
import redis.asyncio as aioredis

from abgate.embedded import reachable, start_postgres, start_redis
from experiments.store import create_pool

if TYPE_CHECKING:
    from experiments.settings import Settings

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """DSN of a real Postgres server."""
    dsn = os.environ.get("ABGATE_TEST_POSTGRES_DSN", DEFAULT_PG)
    if reachable(dsn):
        return dsn
    # Not under pytest's 0700 tmp tree: as root, pgserver runs Postgres as its own system user.
    folder = Path(tempfile.mkdtemp(prefix="abgate-test-pg-"))
    folder.chmod(0o755)
    return start_postgres(folder)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a real Redis server."""
    url = os.environ.get("ABGATE_TEST_REDIS_URL", DEFAULT_REDIS)
    if reachable(url):
        return url
    return start_redis(tmp_path_factory.mktemp("embedded"))


@pytest.fixture
def unique() -> str:
    """A short unique name for this test's schema and key prefix."""
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
async def schema(pg_dsn: str, unique: str) -> AsyncIterator[str]:
    """A Postgres schema of this test, dropped at the end."""
    yield unique
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{unique}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def redis_prefix(redis_url: str, unique: str) -> AsyncIterator[str]:
    """A Redis key prefix of this test; its keys are deleted at the end."""
    prefix = f"abgate-test:{unique}:"
    yield prefix
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    """Root of this test's log archive."""
    return tmp_path / "archive"


@pytest.fixture
def experiments_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty folder for this test's experiment files."""
    d = tmp_path / "experiments.d"
    d.mkdir()
    yield d


@pytest.fixture
async def pool(pg_dsn: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's schema, migrated."""
    p = await create_pool(pg_dsn, schema)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def demo_units() -> int:
    """Units per demo version that ``gateway_settings`` loads (override it in a module)."""
    return 50


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    """Settings ``gateway_settings`` changes (override it in a module: ``api_tokens``...)."""
    return {}


@pytest.fixture
async def gateway_settings(
    pg_dsn: str,
    redis_url: str,
    schema: str,
    redis_prefix: str,
    experiments_dir: Path,
    archive_dir: Path,
    demo_units: int,
    gateway_overrides: dict[str, object],
) -> Settings:
    """Settings of a gateway on this test's schema and key prefix, with the demo's models
    loaded (``demo_units`` units) and its experiment written to ``experiments_dir``."""
    from tests.gateway.helpers import load_demo_data, settings_for, write_config

    await load_demo_data(pg_dsn, schema, units=demo_units)
    write_config(experiments_dir)
    return settings_for(
        pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, **gateway_overrides
    )
