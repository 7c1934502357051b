"""Hostile input against real Postgres and Redis: refused at the edge or failing its own request
alone, never opening a breaker for everyone else (issue 12, case 1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import ModelVersion
from experiments.settings import Settings
from gateway.errors import BadRequest, ResultsStoreRefused
from gateway.parsing import RecommendationRequest, check_storable
from tests.gateway.helpers import load_demo_data, running_app, settings_for, write_config

REFUSED = [pytest.param("x\x00y", id="nul"), pytest.param("x\ud800y", id="unpaired-surrogate")]
STORED = [pytest.param("\x01\x7f\u200b\ufffe\U0010ffff é", id="controls-noncharacters-astral")]


@pytest.mark.parametrize("value", REFUSED)
async def test_what_the_parser_refuses_postgres_text_refuses_too(pg_dsn, value: str) -> None:
    with pytest.raises(BadRequest):
        check_storable(value, "unit_id")
    conn = await asyncpg.connect(pg_dsn)
    try:
        with pytest.raises(asyncpg.DataError):
            await conn.fetchval("SELECT $1::text", value)
    finally:
        await conn.close()


@pytest.mark.parametrize("value", STORED)
async def test_what_postgres_text_stores_the_parser_accepts(pg_dsn, value: str) -> None:
    check_storable(value, "unit_id")
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT $1::text", value) == value
    finally:
        await conn.close()


@pytest.fixture
def demo_units() -> int:
    return 60


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    # Breakers that stay open for an hour: any trip during a test is still visible at its end.
    return {"postgres_retry_after": 3600, "redis_retry_after": 3600}


def breakers_closed(app: Any) -> bool:
    gw = app.state.abgate.gateway
    return (
        gw.results.store.available
        and gw.results.cache.available
        and gw.results.cache.fill_breaker.closed
    )


async def test_nul_requests_under_traffic_leave_cache_misses_served_from_postgres(
    gateway_settings,
):
    """The issue's case: a NUL request among uncached traffic used to open the Postgres breaker
    and turn every following miss into a fallback answer."""
    async with running_app(gateway_settings) as (app, client):

        async def ask(unit: str) -> httpx.Response:
            return await client.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": unit}
            )

        sources: list[str] = []
        for wave in range(6):  # each wave: ten cache misses in flight with one NUL request
            units = [f"u{wave * 10 + i}" for i in range(10)]
            answers = await asyncio.gather(ask(f"x\x00{wave}"), *(ask(u) for u in units))
            bad, good = answers[0], answers[1:]
            assert bad.status_code == 400 and bad.json()["field"] == "unit_id"
            sources += [r.json()["source"] for r in good]
        assert breakers_closed(app)
    assert sources == ["db"] * 60


async def test_a_refused_read_fails_its_own_request_and_spares_its_batch(gateway_settings):
    """Behind the edge: a NUL unit that reaches Postgres in a coalesced batch gets the fallback;
    the units read in the same batch get their lists, and the breaker stays closed."""
    async with running_app(gateway_settings) as (app, _):
        gw = app.state.abgate.gateway

        def req(unit: str) -> RecommendationRequest:
            return RecommendationRequest("home_top", unit, frozenset(), None, {})

        answers = await asyncio.gather(
            gw.answer(req("u1")), gw.answer(req("x\x00y")), gw.answer(req("u2"))
        )
        with pytest.raises(ResultsStoreRefused):  # the store itself says why
            await gw.results.store.get(ModelVersion("home_recs", "1"), "\x00")
        assert breakers_closed(app)
    assert [a.source for a in answers] == ["db", "fallback", "db"]


async def test_a_redis_error_reply_skips_redis_for_that_unit_only(gateway_settings, redis_url):
    async with running_app(gateway_settings) as (app, client):
        gw = app.state.abgate.gateway
        writer = aioredis.from_url(redis_url)
        try:  # a key of the wrong type: GET answers -WRONGTYPE
            for version in ("1", "2"):
                await writer.rpush(
                    gw.results.cache.key(ModelVersion("home_recs", version), "u7"), "x"
                )
        finally:
            await writer.aclose()
        odd = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u7"}
        )
        other = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u8"}
        )
        assert breakers_closed(app)
    assert (odd.status_code, odd.json()["source"]) == (200, "db")
    assert other.json()["source"] == "db"


# --- arbitrary bodies against a running app ----------------------------------------------------


@contextlib.contextmanager
def app_in_thread(
    settings: Settings,
) -> Iterator[tuple[Any, Callable[[str, bytes], httpx.Response]]]:
    """The app with its lifespan running on an event loop of its own thread, and a blocking
    ``post(path, body)``: hypothesis drives it from a plain test function."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="app-loop", daemon=True)
    thread.start()
    context = running_app(settings)
    app, client = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(60)

    def post(path: str, body: bytes) -> httpx.Response:
        call = client.post(path, content=body, headers={"content-type": "application/json"})
        return asyncio.run_coroutine_threadsafe(call, loop).result(30)

    try:
        yield app, post
    finally:
        asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
unit_ids = st.text(max_size=20) | st.sampled_from(["u1", "u2", "\x00", "u1\x00", "nobody"])
rec_bodies = st.fixed_dictionaries(
    {"surface": st.sampled_from(["home_top", "cart_upsell"]) | st.text(max_size=10)},
    optional={
        "unit_id": unit_ids,
        "exclude": st.lists(st.text(max_size=8), max_size=3) | json_values,
        "limit": st.integers(-5, 300) | json_values,
        "attributes": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    },
)
event_bodies = st.fixed_dictionaries(
    {"unit_id": unit_ids, "name": st.text(max_size=10)},
    optional={
        "value": json_values,
        "item_id": st.text(max_size=10),
        "ts": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(),
        "event_id": st.text(max_size=70),
    },
)


@pytest.mark.slow
@settings(
    max_examples=250,
    deadline=None,
    # One app (and its schema) serves every example on purpose: the breakers must hold across them.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path_and_body=st.one_of(
        st.tuples(st.just("/v1/recommendations"), rec_bodies.map(json.dumps)),
        st.tuples(st.just("/v1/events"), event_bodies.map(json.dumps)),
        st.tuples(st.just("/v1/events"), st.lists(event_bodies, max_size=3).map(json.dumps)),
        st.tuples(st.sampled_from(["/v1/recommendations", "/v1/events"]), st.text(max_size=50)),
    )
)
def test_no_body_gets_a_5xx_or_opens_a_breaker(served_app, path_and_body) -> None:
    app, post = served_app
    path, body = path_and_body
    r = post(path, body.encode("utf-8", "surrogatepass"))
    assert r.status_code < 500, r.text
    assert breakers_closed(app)


@pytest.fixture
def served_app(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir
) -> Iterator[tuple[Any, Callable[[str, bytes], httpx.Response]]]:
    asyncio.run(load_demo_data(pg_dsn, schema, units=5))
    write_config(experiments_dir)
    config = settings_for(
        pg_dsn,
        redis_url,
        schema,
        redis_prefix,
        experiments_dir,
        archive_dir,
        postgres_retry_after=3600,
        redis_retry_after=3600,
    )
    with app_in_thread(config) as served:
        yield served
