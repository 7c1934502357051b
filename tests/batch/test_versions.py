"""Rollback, drop and the retention rule."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from batch import (
    VersionError,
    VersionInUse,
    drop,
    list_versions,
    load_results,
    retention_candidates,
    rollback,
    serving_refs,
    set_alias,
)
from experiments import ModelRef, ModelVersion
from registry import AliasError
from tests.batch.conftest import version_rows
from tests.gateway.helpers import EXPERIMENT, write_config


async def _load(pool: asyncpg.Pool, *versions: str, alias: str | None = None) -> None:
    for v in versions:
        await load_results(pool, iter(version_rows(v, units=3)), "home_recs", v, alias=alias)


async def test_rollback_walks_back_through_the_alias_history(pool: asyncpg.Pool) -> None:
    await _load(pool, "1", "2", "3", alias="champion")
    assert await rollback(pool, "home_recs", "champion") == ("3", "2")
    assert await rollback(pool, "home_recs", "champion") == ("2", "1")
    with pytest.raises(AliasError, match="no earlier version"):
        await rollback(pool, "home_recs", "champion")
    await set_alias(pool, "home_recs", "champion", "3")
    assert await rollback(pool, "home_recs", "champion") == ("3", "1")


async def test_rollback_refuses_a_dropped_version(pool: asyncpg.Pool) -> None:
    await _load(pool, "1", "2", alias="champion")
    await drop(pool, ModelVersion("home_recs", "1"), [])
    with pytest.raises(VersionError, match="back to version 1: it is retired"):
        await rollback(pool, "home_recs", "champion")
    assert await pool.fetchval("SELECT version FROM model_aliases") == "2"


async def test_drop_refuses_a_version_that_serves(
    pool: asyncpg.Pool, experiments_dir: Path
) -> None:
    await _load(pool, "1", alias="champion")
    await _load(pool, "2")
    write_config(experiments_dir, EXPERIMENT)  # running: control @champion, treatment home_recs/2
    refs = await serving_refs(pool, experiments_dir)
    with pytest.raises(VersionInUse) as info:
        await drop(pool, ModelVersion("home_recs", "1"), refs)
    assert "alias @champion points at it" in str(info.value)
    assert "surface 'home_top'" in str(info.value)
    with pytest.raises(VersionInUse, match="running experiment 'home-exp' variant 'treatment'"):
        await drop(pool, ModelVersion("home_recs", "2"), refs)
    assert {v.status for v in await list_versions(pool)} == {"active"}


async def test_drop_removes_the_partition_and_keeps_the_lineage(pool: asyncpg.Pool) -> None:
    await _load(pool, "1", "2")
    await drop(pool, ModelVersion("home_recs", "1"), [])
    assert await pool.fetchval("SELECT count(*) FROM results WHERE version = '1'") == 0
    assert await pool.fetchval("SELECT count(*) FROM results WHERE version = '2'") == 3
    v1 = next(v for v in await list_versions(pool) if v.version == "1")
    assert v1.status == "retired" and v1.metadata["units"] == 3
    await _load(pool, "1")  # a dropped version can be loaded again
    assert await pool.fetchval("SELECT count(*) FROM results WHERE version = '1'") == 3


async def test_retention_keeps_the_newest_and_every_serving_version(pool: asyncpg.Pool) -> None:
    await _load(pool, "1", alias="champion")
    await _load(pool, "2", "3", "4", "5")
    refs = [("a test", ModelRef.parse("models:/home_recs/3"))]
    dropped = await retention_candidates(pool, 2, refs)
    assert [mv.version for mv in dropped] == ["2"]
