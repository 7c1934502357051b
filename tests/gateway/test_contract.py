"""The OpenAPI document is the contract: the parser accepts exactly what it declares valid.

Bodies are generated from the document itself (schemathesis' positive and negative strategies)
and each one is both validated against the schema and given to the parser; the two must agree.
The HTTP details the document promises (Allow, WWW-Authenticate, no host-derived redirect, the
surfaces enum following a reload) are checked on a running app.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema_rs
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.config import parse_surfaces_file
from experiments.postgres import create_pool
from experiments.store import PostgresExperimentStore
from gateway.errors import BadRequest
from gateway.openapi import build_openapi
from gateway.requests import parse_events, parse_recommendation
from tests.gateway.helpers import SURFACES, load_demo_data, running_app, settings_for, write_config

DOC = orjson.loads(build_openapi(parse_surfaces_file(SURFACES).surfaces, auth=True))
MAX_LIMITS = {s.name: s.max_limit for s in parse_surfaces_file(SURFACES).surfaces}
API = schemathesis.openapi.from_dict(DOC)


def _validator(name: str) -> Any:
    root = {"$ref": f"#/components/schemas/{name}", "components": DOC["components"]}
    return jsonschema_rs.validator_for(root, validate_formats=True)


def _events_validator() -> Any:
    body = DOC["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    return jsonschema_rs.validator_for(
        {**body["schema"], "components": DOC["components"]}, validate_formats=True
    )


RECOMMENDATION = _validator("RecommendationRequest")
EVENTS = _events_validator()


def _encode(body: object) -> bytes:
    # As an HTTP client would send it (orjson refuses integers beyond 64 bits; json does not).
    return json.dumps(body).encode()


def recommendation_accepted(body: object) -> bool:
    """What the gateway does before routing: parse, then the surface's own limit bound."""
    try:
        req = parse_recommendation(_encode(body))
    except BadRequest:
        return False
    max_limit = MAX_LIMITS.get(req.surface)
    return max_limit is not None and (req.limit is None or req.limit <= max_limit)


def events_accepted(body: object) -> bool:
    try:
        parse_events(_encode(body))
    except BadRequest:
        return False
    return True


def _bodies(path: str) -> st.SearchStrategy[object]:
    op = API[path]["POST"]
    return (
        st.one_of(
            op.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
            op.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
        )
        .map(lambda case: case.body)
        .filter(lambda body: not isinstance(body, bytes))
    )  # not JSON


AGREEMENT = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@AGREEMENT
@given(_bodies("/v1/recommendations"))
def test_recommendation_parser_accepts_exactly_what_the_schema_declares_valid(body):
    assert recommendation_accepted(body) == RECOMMENDATION.is_valid(body), body


@AGREEMENT
@given(_bodies("/v1/events"))
def test_events_parser_accepts_exactly_what_the_schema_declares_valid(body):
    assert events_accepted(body) == EVENTS.is_valid(body), body


# Hand-made bodies at the edges the generators may miss, each valid or not by both.
EDGES: list[tuple[str, object]] = [
    ("rec", {"surface": "home_top", "unit_id": "u"}),
    ("rec", {"surface": "home_top", "unit_id": "u", "limit": 50}),
    ("rec", {"surface": "home_top", "unit_id": "u", "limit": 51}),  # over home_top's max_limit
    ("rec", {"surface": "cart_upsell", "unit_id": "u", "limit": 200}),
    ("rec", {"surface": "cart_upsell", "unit_id": "u", "limit": 201}),
    ("rec", {"surface": "home_top", "unit_id": "u", "limit": 3.0}),  # a JSON Schema integer
    ("rec", {"surface": "home_top", "unit_id": "u", "limit": 3.5}),
    ("rec", {"surface": "home_top", "unit_id": "u", "limit": True}),
    ("rec", {"surface": "home_top", "unit_id": "", "limit": None}),
    ("rec", {"surface": "home_top", "unit_id": "x" * 256}),
    ("rec", {"surface": "home_top", "unit_id": "x" * 257}),
    ("rec", {"surface": "home_top", "unit_id": "u", "exclude": None, "attributes": None}),
    ("rec", {"surface": "home_top", "unit_id": "u", "exclude": ["a"] * 1000}),
    ("rec", {"surface": "home_top", "unit_id": "u", "exclude": ["a"] * 1001}),
    ("rec", {"surface": "home_top", "unit_id": "u", "attributes": {"a": None, "b": 1.5}}),
    ("rec", {"surface": "home_top", "unit_id": "u", "attributes": {"a": [1]}}),
    ("rec", {"surface": "nowhere", "unit_id": "u"}),
    ("rec", {"surface": "home_top", "unit_id": "u", "limt": 3}),
    ("rec", ["not", "an", "object"]),
    ("ev", {"unit_id": "u", "name": "purchase"}),
    ("ev", {"unit_id": "u", "name": "purchase", "value": None, "item_id": None, "ts": None}),
    ("ev", {"unit_id": "u", "name": "p", "event_id": "order-17_a"}),
    ("ev", {"unit_id": "u", "name": "p", "event_id": "order-17\n"}),  # fullmatch, as JSON Schema
    ("ev", {"unit_id": "u", "name": "p", "event_id": "x" * 65}),
    ("ev", {"unit_id": "u", "name": "p", "item_id": ""}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:00:00Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:00:00"}),  # no time zone
    ("ev", [{"unit_id": "u", "name": "p"}] * 1000),
    ("ev", [{"unit_id": "u", "name": "p"}] * 1001),
    ("ev", []),
    ("ev", {"unit_id": "u", "name": "p", "value": "1"}),
]


@pytest.mark.parametrize(("kind", "body"), EDGES)
def test_parser_and_schema_agree_on_the_edges(kind, body):
    if kind == "rec":
        assert recommendation_accepted(body) == RECOMMENDATION.is_valid(body)
    else:
        assert events_accepted(body) == EVENTS.is_valid(body)


@pytest.fixture
async def gateway_settings(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir):
    await load_demo_data(pg_dsn, schema)
    write_config(experiments_dir)
    return settings_for(
        pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, api_tokens="tok"
    )


async def test_405_names_the_allowed_methods(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        r = await client.get("/v1/recommendations")
        e = await client.delete("/v1/events")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert e.status_code == 405 and e.headers["allow"] == "POST"


async def test_401_carries_a_bearer_challenge(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        none = await client.post("/v1/recommendations", json={})
        wrong = await client.get("/v1/experiments", headers={"authorization": "Bearer nope"})
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == 'Bearer realm="abgate"'
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="abgate", error="invalid_token"'


async def test_a_trailing_slash_is_not_redirected_to_the_host_header(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        r = await client.post(
            "/v1/recommendations/",
            json={"surface": "home_top", "unit_id": "u1"},
            headers={"host": "evil.example", "authorization": "Bearer tok"},
        )
    assert r.status_code == 404
    assert "location" not in r.headers


async def test_the_document_lists_the_configured_surfaces_and_auth(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        doc = (await client.get("/openapi.json")).json()
    branches = doc["components"]["schemas"]["RecommendationRequest"]["oneOf"]
    bounds = {b["properties"]["surface"]["const"]: b["properties"]["limit"] for b in branches}
    assert bounds.keys() == {"home_top", "cart_upsell"}
    assert bounds["home_top"]["anyOf"][0]["maximum"] == 50
    ops = doc["paths"]
    assert {op["post"]["operationId"] for p, op in ops.items() if "post" in op} == {
        "getRecommendations",
        "recordEvents",
    }
    for path in ("/v1/recommendations", "/v1/events"):
        assert {"401", "403"} <= ops[path]["post"]["responses"].keys()
    assert "503" in ops["/v1/events"]["post"]["responses"]
    assert "event_id" in doc["components"]["schemas"]["Event"]["properties"]
    assert ops["/healthz"]["get"]["security"] == [{}]


async def test_the_surfaces_enum_follows_a_configuration_reload(
    pg_dsn, redis_url, schema, redis_prefix, archive_dir
):
    await load_demo_data(pg_dsn, schema)
    pool = await create_pool(pg_dsn, schema)
    store = PostgresExperimentStore(pool)
    try:
        await store.apply_surfaces(parse_surfaces_file(SURFACES), author="test")
        settings = settings_for(pg_dsn, redis_url, schema, redis_prefix, None, archive_dir)
        async with running_app(settings) as (_, client):

            async def surfaces() -> set[str]:
                doc = (await client.get("/openapi.json")).json()
                branches = doc["components"]["schemas"]["RecommendationRequest"]["oneOf"]
                return {b["properties"]["surface"]["const"] for b in branches}

            assert await surfaces() == {"home_top", "cart_upsell"}
            more = SURFACES + '  - {name: search_top, default_model: "models:/cart_recs/1"}\n'
            await store.apply_surfaces(parse_surfaces_file(more), author="test")
            async with asyncio.timeout(10):
                while await surfaces() != {"home_top", "cart_upsell", "search_top"}:
                    await asyncio.sleep(0.05)  # the reload arrives by NOTIFY: poll the result
    finally:
        await pool.close()
