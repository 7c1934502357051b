"""The benchmark's reference app (shipped in the repository) answers from real Redis."""

from __future__ import annotations

import httpx
import orjson
import redis.asyncio as aioredis

from benchmarks.gateway.ref_app import create_app, variant_of
from benchmarks.gateway.ref_pg_app import version_of
from experiments import bucket


def test_the_reference_split_is_designs_bucket_of_the_ref_salt() -> None:
    for i in range(200):
        unit = f"u{i}"
        expected = "control" if bucket("ref", unit) < 5000 else "treatment"
        assert variant_of(unit) == expected
        assert version_of(unit) == ("1" if expected == "control" else "2")


async def test_the_reference_reads_one_key_drops_exclusions_and_cuts_to_limit(
    redis_url: str, monkeypatch
) -> None:
    unit = "ref-test-unit"
    key = f"ref:{variant_of(unit)}:{unit}"
    items = [{"id": f"sku-{k}", "score": 1 - k / 10} for k in range(10)]
    client = aioredis.from_url(redis_url)
    await client.set(key, orjson.dumps(items))
    monkeypatch.setenv("REF_REDIS_URL", redis_url)
    app = create_app()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ref") as http:
                body = (
                    await http.post(
                        "/v1/recommendations",
                        json={"unit_id": unit, "exclude": ["sku-0", "sku-2"], "limit": 3},
                    )
                ).json()
    finally:
        await client.delete(key)
        await client.aclose()
    assert body == {
        "unit_id": unit,
        "variant": variant_of(unit),
        "items": [items[1], items[3], items[4]],
    }


async def test_more_open_requests_than_its_redis_pool_wait_instead_of_failing(
    redis_url: str, monkeypatch
) -> None:
    """The open-loop capacity comparison holds 256 requests open: the reference must queue them
    on its 100-connection pool (redis-py's default pool raises MaxConnectionsError, a 500)."""
    import asyncio

    unit = "ref-test-pool"
    key = f"ref:{variant_of(unit)}:{unit}"
    client = aioredis.from_url(redis_url)
    await client.set(key, orjson.dumps([{"id": "a", "score": 1.0}]))
    monkeypatch.setenv("REF_REDIS_URL", redis_url)
    app = create_app()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://ref") as http:
                answers = await asyncio.gather(
                    *(http.post("/v1/recommendations", json={"unit_id": unit}) for _ in range(300))
                )
    finally:
        await client.delete(key)
        await client.aclose()
    assert [a.status_code for a in answers] == [200] * 300
