"""PostgresConfigSource: hot reload within a second, invalid changes ignored, disk cache."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from experiments import StoreUnavailable
from experiments.source import ConfigSnapshot
from experiments.store import PostgresConfigSource, PostgresExperimentStore
from tests.experiments.helpers import experiment

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/none"


@pytest.fixture
async def source(
    pg_dsn: str, schema: str, tmp_path: Path, store: PostgresExperimentStore
) -> AsyncIterator[PostgresConfigSource]:
    s = PostgresConfigSource(
        pg_dsn, schema, cache_file=tmp_path / "snapshot.json", poll_interval=5.0
    )
    try:
        yield s
    finally:
        await s.aclose()


class Follower:
    """Follows ``source.changes()`` from a task, as the gateway does; ``next`` waits with a timeout.

    Cancelling ``anext`` of an async generator closes it, so a timeout must not cancel the
    pending step: it stays pending for the next call.
    """

    def __init__(self, source: PostgresConfigSource) -> None:
        self._changes = source.changes()
        self._task: asyncio.Task[ConfigSnapshot] | None = None

    async def _step(self) -> ConfigSnapshot:
        return await anext(self._changes)

    async def next(self, timeout: float = 1.0) -> ConfigSnapshot:
        if self._task is None:
            self._task = asyncio.create_task(self._step(), name="follow-config")
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            raise TimeoutError(f"no snapshot within {timeout} s")
        task, self._task = self._task, None
        return task.result()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await self._task
        await self._changes.aclose()


async def test_changes_arrive_within_a_second(
    source: PostgresConfigSource, store: PostgresExperimentStore
) -> None:
    first = await source.load()
    assert first.origin.startswith("postgres:") and first.config.experiments == {}
    changes = Follower(source)
    delays = []
    await store.apply(experiment(), author="a")
    for step in ("apply", "start", "pause", "resume"):
        t0 = time.perf_counter()
        if step != "apply":
            await getattr(store, step)("exp", author="a")
        snap = await changes.next()  # the poll interval is 5 s: only NOTIFY can make this in time
        delays.append(time.perf_counter() - t0)
        assert snap.revision > first.revision
    assert snap.versions == {"exp": 4} and snap.config.experiments["exp"].status == "running"
    print(f"reload delays (s): {[round(d, 4) for d in delays]}")
    await changes.aclose()


async def test_notifications_of_other_schemas_are_ignored(
    source: PostgresConfigSource, pg_dsn: str
) -> None:
    await source.load()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("SELECT pg_notify('abgate_config', 'some_other_schema')")
    finally:
        await conn.close()
    changes = Follower(source)
    with pytest.raises(TimeoutError):
        await changes.next(timeout=0.5)
    await changes.aclose()


async def test_an_invalid_change_never_replaces_the_working_snapshot(
    source: PostgresConfigSource, store: PostgresExperimentStore, pool: asyncpg.Pool
) -> None:
    await store.apply(experiment(), author="a")
    good = await source.load()
    # A change the store would refuse, written behind its back (another tool, a bad migration).
    body = {**experiment().model_dump(mode="json"), "traffic": 7}
    await pool.execute(
        "INSERT INTO config_versions (kind, name, version, body, status, action, author, revision)"
        " VALUES ('experiment', 'exp', 2, $1::jsonb, 'draft', 'apply', 'x', 99)",
        json.dumps(body),
    )
    await pool.execute("UPDATE config_heads SET version = 2 WHERE name = 'exp'")
    await pool.execute("UPDATE config_state SET revision = revision + 1")
    await pool.execute("SELECT pg_notify('abgate_config', current_schema())")
    changes = Follower(source)
    with pytest.raises(TimeoutError):
        await changes.next(timeout=0.7)
    assert source.last_error is not None and "traffic" in source.last_error
    # The next valid change is picked up.
    await pool.execute("UPDATE config_heads SET version = 1 WHERE name = 'exp'")
    await store.apply(experiment(traffic=0.5), author="a")
    snap = await changes.next()
    assert snap.config.experiments["exp"].traffic == 0.5 and snap.revision > good.revision
    await changes.aclose()


async def test_unreachable_store_at_start_serves_the_disk_cache(
    source: PostgresConfigSource, store: PostgresExperimentStore, tmp_path: Path
) -> None:
    await store.apply(experiment(status="running"), author="a")
    live = await source.load()
    cold = PostgresConfigSource(
        UNREACHABLE, "whatever", cache_file=tmp_path / "snapshot.json", connect_timeout=0.5
    )
    try:
        cached = await cold.load()
    finally:
        await cold.aclose()
    assert cached.origin == f"disk-cache:{tmp_path / 'snapshot.json'}" and cached.from_disk_cache
    assert cached.versions == live.versions and cached.revision == live.revision
    assert (
        cached.config.experiments == live.config.experiments
        and cached.config.surfaces == live.config.surfaces
    )
    assert cold.last_error is not None and "unreachable" in cold.last_error


async def test_unreachable_store_without_cache_fails_clearly(tmp_path: Path) -> None:
    cold = PostgresConfigSource(
        UNREACHABLE, "whatever", cache_file=tmp_path / "none.json", connect_timeout=0.5
    )
    with pytest.raises(StoreUnavailable, match="no snapshot cache"):
        await cold.load()
    await cold.aclose()


async def test_reconnects_and_catches_up_after_the_listener_drops(
    source: PostgresConfigSource, store: PostgresExperimentStore, pg_dsn: str
) -> None:
    await source.load()
    changes = Follower(source)
    # Kill the listening connection from the server side, then change while it is down.
    admin = await asyncpg.connect(pg_dsn)
    try:
        killed = await admin.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'abgate-config-listener'"
            " AND pid = $1",
            source._conn.get_server_pid() if source._conn else 0,
        )
    finally:
        await admin.close()
    assert killed
    await store.apply(experiment(), author="a")
    snap = await changes.next(timeout=source.poll_interval * 2 + 2)
    assert "exp" in snap.config.experiments and source.connected
    await changes.aclose()
