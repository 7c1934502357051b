"""API keys under open-loop load on a real gateway: a revocation and a rate limit hit one key only.

Two callers load ``abgate serve`` (``ABGATE_API_KEYS=true``) at the same time. A revoked key
must get 401 within REVOCATION_BOUND of the commit (the NOTIFY path) while the other key keeps
getting 200s; a key over its rate gets 429 with ``Retry-After`` while the other is unaffected.
Each test prints its figures (the fault table of issue 12): load, 5xx, answers by status, p99.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from experiments.store import PostgresKeyStore, create_pool
from tests.gateway.helpers import load_demo_data, read_archive, write_config
from tests.integration.load import Result, gateway, open_loop, p99
from tests.integration.test_serve_process import _gateway_env

pytestmark = pytest.mark.slow

RATE = 40  # requests per second per caller, open loop
UNITS = 20
REVOCATION_BOUND = 2.0  # seconds from the revoke's commit to the first 401 (NOTIFY + reload)


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def _keys(pg_dsn: str, schema: str, *specs: tuple[str, str | None]) -> list[str]:
    pool = await create_pool(pg_dsn, schema)
    try:
        store = PostgresKeyStore(pool)
        return [
            (await store.create(name, [], rate, actor="test", host="here"))[1]
            for name, rate in specs
        ]
    finally:
        await pool.close()


def _summary(name: str, results: list[Result]) -> str:
    statuses = Counter(s for s, _, _ in results)
    lat = [x for _, x, _ in results]
    return (
        f"{name}: {len(results)} requests, statuses {dict(statuses)}, p99 {p99(lat) * 1000:.0f} ms"
    )


async def test_a_key_revoked_under_load_is_refused_within_seconds_and_others_are_not(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=UNITS)
    write_config(experiments_dir)
    doomed, other = await _keys(pg_dsn, schema, ("doomed", None), ("other", None))
    env, url = _gateway_env(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    env |= {"ABGATE_API_KEYS": "true", "ABGATE_CONFIG_POLL_INTERVAL": "60"}  # NOTIFY, not poll
    first_401: list[float] = []

    def watch(at: float, r: httpx.Response) -> None:
        if r.status_code == 401 and not first_401:
            first_401.append(time.monotonic())

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        gateway(env, url, tmp_path / "serve.log"),
        httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client,
    ):

        async def revoke_after(delay: float) -> float:
            await asyncio.sleep(delay)  # mid-load, by design: the fault is a moment in the load
            pool = await create_pool(pg_dsn, schema)
            try:
                await PostgresKeyStore(pool).revoke("doomed", actor="test", host="here")
                return time.monotonic()  # the commit has returned
            finally:
                await pool.close()

        doomed_res, other_res, revoked_at = await asyncio.gather(
            open_loop(client, RATE, 4.0, UNITS, bearer(doomed), on_answer=watch),
            open_loop(client, RATE, 4.0, UNITS, bearer(other)),
            revoke_after(1.5),
        )
    lag = first_401[0] - revoked_at if first_401 else float("inf")
    doomed_statuses = [s for s, _, _ in doomed_res]
    last_200 = max(i for i, s in enumerate(doomed_statuses) if s == 200)
    print(
        f"\nkey revocation at {RATE}/s per key: first 401 {lag:.2f} s after the commit; "
        + _summary("revoked key", doomed_res)
        + "; "
        + _summary("other key", other_res)
    )
    assert set(doomed_statuses) == {200, 401}
    assert all(s == 401 for s in doomed_statuses[last_200 + 1 :])  # once refused, always
    assert lag < REVOCATION_BOUND
    assert Counter(s for s, _, _ in other_res) == {200: len(other_res)}  # unaffected, 0 5xx
    served = [b["request_id"] for s, _, b in doomed_res + other_res if s == 200]
    logged = [
        e["jsonPayload"]["request_id"]
        for e in read_archive(archive_dir)
        if e["jsonPayload"]["type"] == "exposure"
    ]
    assert sorted(logged) == sorted(served)  # every answer logged once; no 401 logged


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_are_not(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=UNITS)
    write_config(experiments_dir)
    limited, other = await _keys(pg_dsn, schema, ("limited", "10/s"), ("other", None))
    env, url = _gateway_env(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    env |= {"ABGATE_API_KEYS": "true"}
    retry_after: set[str | None] = set()

    def watch(at: float, r: httpx.Response) -> None:
        if r.status_code == 429:
            retry_after.add(r.headers.get("retry-after"))

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        gateway(env, url, tmp_path / "serve.log"),
        httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client,
    ):
        limited_res, other_res = await asyncio.gather(
            open_loop(client, RATE, 3.0, UNITS, bearer(limited), on_answer=watch),
            open_loop(client, RATE, 3.0, UNITS, bearer(other)),
        )
    statuses = Counter(s for s, _, _ in limited_res)
    print(
        f"\nrate limit 10/s against {RATE}/s: Retry-After {sorted(map(str, retry_after))}; "
        + _summary("limited key", limited_res)
        + "; "
        + _summary("other key", other_res)
    )
    assert set(statuses) == {200, 429}
    # a token bucket of 10/s (burst 10) over 3 s passes about 10 + 30 requests of the 120
    assert 25 <= statuses[200] <= 55, statuses
    assert retry_after and all(v is not None and int(v) >= 1 for v in retry_after)
    assert Counter(s for s, _, _ in other_res) == {200: len(other_res)}  # unaffected, 0 5xx
    served = [b["request_id"] for s, _, b in limited_res + other_res if s == 200]
    logged = [
        e["jsonPayload"]["request_id"]
        for e in read_archive(archive_dir)
        if e["jsonPayload"]["type"] == "exposure"
    ]
    assert sorted(logged) == sorted(served)  # no 429 logged, no answer lost or doubled
