"""The OpenAPI document is the contract: the parser accepts exactly what it declares valid.

Bodies are generated from the document itself (schemathesis' positive and negative strategies)
and each one is both validated against the schema and given to the parser; the two must agree.
One rule JSON Schema cannot state is applied here beside the schema, as the document describes
it: an event's ``ts`` must fall in ``x-abgate-window`` around the gateway's clock.
The HTTP details the document promises (Allow, WWW-Authenticate, no host-derived redirect, the
surfaces enum following a reload) are checked on a running app.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.config import parse_surfaces_file
from experiments.store import PostgresExperimentStore, create_pool
from gateway.errors import BadRequest
from gateway.openapi import build_openapi
from gateway.parsing import parse_events, parse_recommendation
from tests.gateway.helpers import SURFACES, load_demo_data, running_app, settings_for

DOC = orjson.loads(build_openapi(parse_surfaces_file(SURFACES).surfaces, auth=True))
MAX_LIMITS = {s.name: s.max_limit for s in parse_surfaces_file(SURFACES).surfaces}
API = schemathesis.openapi.from_dict(DOC)
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)  # the gateway's clock, for the ts window
TS = DOC["components"]["schemas"]["Event"]["properties"]["ts"]["anyOf"][0]
WINDOW = TS["x-abgate-window"]


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


def valid(validator: Any, body: object) -> bool:
    """What the document declares valid. A string with an unpaired surrogate is outside it: the
    document asks for I-JSON (RFC 7493), and the validator cannot even take such a string."""
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return validator.is_valid(body)


def in_window(ts: object) -> bool:
    """The documented window, for a ts the schema declares valid (or an absent one)."""
    if ts is None:
        return True
    try:
        moment = datetime.fromisoformat(str(ts).upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):  # year 0 or beyond datetime's range: far outside
        return False
    ahead = timedelta(seconds=WINDOW["maxAheadSeconds"])
    return NOW - timedelta(seconds=WINDOW["maxAgeSeconds"]) <= moment <= NOW + ahead


EVENT = _validator("Event")


def events_declared_valid(body: object) -> bool:
    """The body is valid and so is each event: the document's Event schema and the window (a
    list's element is validated on its own, so the request schema leaves its items open)."""
    if not valid(EVENTS, body):
        return False
    events = body if isinstance(body, list) else [body]
    return all(valid(EVENT, e) and in_window(e.get("ts")) for e in events)


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
    """The body and every event in it accepted (none rejected on its own)."""
    try:
        parsed = parse_events(_encode(body), NOW)
    except BadRequest:
        return False
    return not any(isinstance(p, BadRequest) for p in parsed)


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
    assert recommendation_accepted(body) == valid(RECOMMENDATION, body), body


@AGREEMENT
@given(_bodies("/v1/events"))
def test_events_parser_accepts_exactly_what_the_schema_declares_valid(body):
    assert events_accepted(body) == events_declared_valid(body), body


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
    ("ev", [{"unit_id": "u", "name": "p"}, {"unit_id": "u"}]),  # one element rejected
    ("ev", [{"unit_id": "u", "name": "p"}, 7]),
    ("ev", []),
    ("ev", {"unit_id": "u", "name": "p", "value": "1"}),
    # what the backends cannot store: NUL anywhere, unpaired surrogates (not I-JSON)
    ("rec", {"surface": "home_top", "unit_id": "x\u0000y"}),
    ("rec", {"surface": "home_top", "unit_id": "u", "exclude": ["a", "\u0000"]}),
    ("rec", {"surface": "home_top", "unit_id": "u", "attributes": {"k\u0000": "v"}}),
    ("rec", {"surface": "home_top", "unit_id": "u", "attributes": {"k": "v\u0000"}}),
    ("rec", {"surface": "home_top", "unit_id": "u", "attributes": {"": "", "k": 0}}),
    ("rec", {"surface": "home_top", "unit_id": "\x01\u200b\ufffe\U0010ffff é"}),
    ("rec", {"surface": "home_top", "unit_id": "a\ud800"}),
    ("rec", {"surface": "home_top", "unit_id": "u", "exclude": ["\udc80"]}),
    ("ev", {"unit_id": "u", "name": "p\u0000"}),
    ("ev", {"unit_id": "u", "name": "p", "item_id": "\u0000"}),
    ("ev", {"unit_id": "\ud800", "name": "p"}),
    # ts: the window and its edges, the limits of datetime, RFC 3339's corners
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30:00Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27t19:30:00.123456789+09:00"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30:00z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-10-23T10:30:00Z"}),  # 35 days back
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-10-23T10:29:59Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T11:30:00Z"}),  # 1 hour ahead
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T11:30:01Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "0001-01-01T00:00:00+09:00"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "9999-12-31T23:59:59-09:00"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "0000-01-01T00:00:00Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:29:60Z"}),  # leap second
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30:00+00:60"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30:00+24:00"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30:00+0000"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27 10:30:00Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30:00,5Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30:00+01:00:30"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-W48-5T10:30:00Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "٢٠٢٦-11-27T10:30:00Z"}),
    ("ev", {"unit_id": "u", "name": "p", "ts": "2026-11-27T10:30:00Z\n"}),
]


@pytest.mark.parametrize(("kind", "body"), EDGES)
def test_parser_and_schema_agree_on_the_edges(kind, body):
    if kind == "rec":
        assert recommendation_accepted(body) == valid(RECOMMENDATION, body)
    else:
        assert events_accepted(body) == events_declared_valid(body)


def test_the_edges_include_both_answers_for_ts():
    verdicts = {events_accepted(body) for kind, body in EDGES if kind == "ev" and "ts" in body}
    assert verdicts == {True, False}


_digits = st.integers(0, 99).map(lambda n: f"{n:02d}")
# Near-RFC 3339 strings two days before NOW (an offset moves them at most 23:59), so that any
# offset keeps them in the window [NOW - 35 days, NOW + 1 hour]:
# what is left to disagree on is the syntax (separators, ranges, fractions, offsets, leap seconds).
near_timestamps = st.builds(
    lambda sep, h, m, sec, frac, off: f"2026-11-25{sep}{h}:{m}:{sec}{frac}{off}",
    st.sampled_from(["T", "t", " ", "_", ""]),
    _digits,
    _digits,
    _digits,
    st.sampled_from(["", ".", ".5", ".123456", ".1234567891", ",5"]),
    st.sampled_from(["Z", "z", "", "+0000"])
    | st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), _digits, _digits),
)


@settings(max_examples=300, deadline=None)
@given(near_timestamps)
def test_parser_and_schema_agree_on_the_syntax_of_ts(ts):
    body = {"unit_id": "u", "name": "p", "ts": ts}
    assert events_accepted(body) == valid(EVENTS, body), ts


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    return {"api_tokens": "tok"}


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
    unavailable = ops["/v1/recommendations"]["post"]["responses"]["503"]["content"]
    types = unavailable["application/problem+json"]["schema"]["allOf"][1]["properties"]["type"]
    assert {t.rsplit("/", 1)[1] for t in types["enum"]} == {
        "no-answer",
        "logging-unavailable",
        "overloaded",
    }
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
