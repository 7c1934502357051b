"""Readers never see a partial set: a killed load leaves nothing, activation under traffic is clean."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from batch import load_results, rollback
from tests.batch.conftest import version_rows
from tests.gateway.helpers import load_demo_data, running_app, settings_for, write_config

ABGATE = str(Path(sys.executable).parent / "abgate")


def _feed(fifo: Path, release: threading.Event) -> None:
    """Write ~20 MB of a valid long CSV into ``fifo``, then hold it open until released."""
    lines = ["unit_id,item_id,score", "__default__,d,1"]
    lines += [f"u{i // 5},v2-u{i // 5}-{i % 5},{1 - (i % 5) / 5}" for i in range(800_000)]
    data = ("\n".join(lines) + "\n").encode()
    with contextlib.suppress(BrokenPipeError), fifo.open("wb") as f:
        f.write(data)
        f.flush()
        release.wait(60)


async def _copy_progress(conn: asyncpg.Connection, schema: str) -> int:
    """Rows the loader's COPY has sent so far (its table is not visible: it is uncommitted)."""
    return await conn.fetchval(
        """SELECT coalesce(max(p.tuples_processed), 0) FROM pg_stat_progress_copy p
           JOIN pg_stat_activity a USING (pid) WHERE a.query LIKE '%' || $1 || '%'""",
        f"res_{schema}_",
    )


async def test_killing_the_loader_mid_copy_leaves_the_old_version_serving(
    pool: asyncpg.Pool, pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    model = schema  # unique: other tests' loads must not look like ours in pg_stat_activity
    await load_results(pool, iter(version_rows("1")), model, "1", alias="champion")
    before = await pool.fetchval(
        "SELECT items::text FROM results WHERE model = $1 AND unit_id = 'u1'", model
    )
    fifo = tmp_path / "big.csv"
    os.mkfifo(fifo)
    release = threading.Event()
    feeder = threading.Thread(target=_feed, args=(fifo, release), daemon=True)
    feeder.start()
    env = {**os.environ, "ABGATE_POSTGRES_DSN": pg_dsn, "ABGATE_POSTGRES_SCHEMA": schema}
    proc = subprocess.Popen(
        [
            ABGATE,
            "batch",
            "load",
            str(fifo),
            "--model",
            model,
            "--version",
            "2",
            "--alias",
            "champion",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    conn = await asyncpg.connect(pg_dsn)
    try:
        deadline = time.monotonic() + 60
        while await _copy_progress(conn, schema) == 0:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the loader never started its COPY"
            await asyncio.sleep(0.05)
        sent = await _copy_progress(conn, schema)
        proc.kill()  # SIGKILL mid-COPY: no cleanup code runs in the loader
        proc.wait()
        release.set()
        while await _copy_progress(conn, schema):  # the server aborts the COPY's transaction
            await asyncio.sleep(0.05)
        while await conn.fetchval(  # and its backend exits: rollback done, locks released
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%'",
            f"res_{schema}_",
        ):
            assert time.monotonic() < deadline + 60, "the killed loader's backend never exited"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        release.set()
        feeder.join(5)
        if proc.stderr:
            proc.stderr.close()
    assert 0 < sent < 160_000  # killed in the middle of the COPY
    assert await pool.fetchval("SELECT version FROM model_aliases WHERE alias = 'champion'") == "1"
    assert await pool.fetchval("SELECT array_agg(version) FROM model_versions") == ["1"]
    assert (
        await pool.fetchval(
            "SELECT items::text FROM results WHERE model = $1 AND unit_id = 'u1'", model
        )
        == before
    )
    assert await pool.fetchval("SELECT count(*) FROM result_loads") == 1
    leftovers = await pool.fetchval(
        "SELECT count(*) FROM pg_class WHERE relnamespace = $1::regnamespace AND relname LIKE '%\\_2\\_l%'",
        schema,
        timeout=30,  # once took over the pool's 5 s command timeout in CI (a loaded machine)
    )
    assert leftovers == 0
    # ... and the same load simply runs again.
    again = await load_results(pool, iter(version_rows("2")), model, "2", alias="champion")
    assert again.units == 20 and again.activated


async def _traffic(
    client: httpx.AsyncClient, stop: asyncio.Event, seen: list[tuple[int, str, list[str]]]
) -> None:
    rng = random.Random(len(seen))
    while not stop.is_set():
        unit = f"u{rng.randrange(60)}"  # u50..u59 have no list: the default list serves them
        r = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": unit, "limit": 10}
        )
        body = orjson.loads(r.content)
        seen.append(
            (
                r.status_code,
                body.get("model", {}).get("version", ""),
                [i["id"] for i in body.get("items", [])],
            )
        )


def _mixed(seen: list[tuple[int, str, list[str]]]) -> list[tuple[int, str, list[str]]]:
    """Responses that are errors, or whose items are not all of the version they claim."""
    return [
        s
        for s in seen
        if s[0] != 200 or not s[2] or not all(i.startswith(f"home_recs-v{s[1]}-") for i in s[2])
    ]


@pytest.mark.slow
async def test_activation_and_rollback_under_traffic_serve_no_error_and_no_mixed_list(
    pg_dsn: str,
    redis_url: str,
    schema: str,
    redis_prefix: str,
    experiments_dir: Path,
    archive_dir: Path,
) -> None:
    await load_demo_data(pg_dsn, schema)
    write_config(experiments_dir, experiment=None)
    settings = settings_for(
        pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, alias_refresh=0.05
    )
    pool = await asyncpg.create_pool(
        pg_dsn, server_settings={"search_path": schema}, min_size=1, max_size=2
    )
    seen: list[tuple[int, str, list[str]]] = []
    try:
        async with running_app(settings) as (_, client):
            stop = asyncio.Event()
            workers = [asyncio.create_task(_traffic(client, stop, seen)) for _ in range(4)]
            await asyncio.sleep(0.3)
            rows = [
                (
                    f"u{i}",
                    [{"id": f"home_recs-v3-u{i}-{k}", "score": 1 - k / 30} for k in range(30)],
                )
                for i in range(50)
            ]
            rows.append(
                (
                    "__default__",
                    [{"id": f"home_recs-v3-default-{k}", "score": 1 - k / 30} for k in range(30)],
                )
            )
            await load_results(pool, iter(rows), "home_recs", "3", alias="champion")
            await asyncio.sleep(0.5)
            served_v3 = len(seen)
            assert await rollback(pool, "home_recs", "champion") == ("3", "1")
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*workers)
    finally:
        await pool.close()
    versions = [s[1] for s in seen]
    assert _mixed(seen) == []
    assert "3" in versions[:served_v3] and versions[-1] == "1"
    assert versions.index("3") < max(i for i, v in enumerate(versions) if v == "1")
