"""Bad input gets a located 4xx problem response, and writes no exposure."""

from __future__ import annotations

import pytest

from tests.gateway.helpers import (
    read_archive,
    running_app,
)

OK = {"surface": "home_top", "unit_id": "u1"}

CASES = [
    pytest.param(b"{not json", 400, None, id="malformed-json"),
    pytest.param(b"", 400, None, id="empty-body"),
    pytest.param(b"[1, 2]", 400, None, id="not-an-object"),
    pytest.param({"surface": "home_top"}, 400, "unit_id", id="missing-unit-id"),
    pytest.param({"unit_id": "u1"}, 400, "surface", id="missing-surface"),
    pytest.param({**OK, "unit_id": 42}, 400, "unit_id", id="unit-id-not-a-string"),
    pytest.param({**OK, "unit_id": ""}, 400, "unit_id", id="unit-id-empty"),
    pytest.param({**OK, "unit_id": "u" * 257}, 400, "unit_id", id="unit-id-too-long"),
    pytest.param({**OK, "limit": 0}, 400, "limit", id="limit-zero"),
    pytest.param({**OK, "limit": 201}, 400, "limit", id="limit-over-200"),
    pytest.param({**OK, "limit": 51}, 400, "limit", id="limit-over-surface-max"),
    pytest.param({**OK, "limit": "10"}, 400, "limit", id="limit-not-an-int"),
    pytest.param({**OK, "limit": True}, 400, "limit", id="limit-bool"),
    pytest.param({**OK, "exclude": "sku-1"}, 400, "exclude", id="exclude-not-a-list"),
    pytest.param({**OK, "exclude": ["a", 3]}, 400, "exclude[1]", id="exclude-item-not-a-string"),
    pytest.param(
        {**OK, "exclude": [f"s{i}" for i in range(1001)]}, 400, "exclude", id="too-many-exclusions"
    ),
    pytest.param({**OK, "attributes": [1]}, 400, "attributes", id="attributes-not-an-object"),
    pytest.param({**OK, "attributes": {"a": {"b": 1}}}, 400, "attributes.a", id="attribute-nested"),
    pytest.param({**OK, "colour": "red"}, 400, "colour", id="unknown-field"),
    pytest.param({**OK, "surface": "nowhere"}, 404, None, id="unknown-surface"),
    pytest.param(
        b'{"surface": "home_top", "unit_id": "u1", "pad": "' + b"x" * 70_000 + b'"}',
        413,
        None,
        id="body-over-64k",
    ),
]


@pytest.mark.parametrize(("body", "status", "field"), CASES)
async def test_bad_recommendation_requests_are_refused_with_the_field_named(
    gateway_settings, archive_dir, body, status, field
):
    async with running_app(gateway_settings) as (_, client):
        if isinstance(body, bytes):
            r = await client.post(
                "/v1/recommendations", content=body, headers={"content-type": "application/json"}
            )
        else:
            r = await client.post("/v1/recommendations", json=body)
        good = await client.post("/v1/recommendations", json=OK)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://abgate.dev/problems/")
    assert problem.get("field") == field
    assert "Traceback" not in r.text
    # Only the good request after it was exposed.
    exposures = [e for e in read_archive(archive_dir) if e["jsonPayload"]["type"] == "exposure"]
    assert len(exposures) == (1 if good.json()["experiment"] else 0)


EVENT_CASES = [
    pytest.param({"name": "purchase"}, "unit_id", id="missing-unit-id"),
    pytest.param({"unit_id": "u1"}, "name", id="missing-name"),
    pytest.param({"unit_id": "u1", "name": "p", "value": "12"}, "value", id="value-not-a-number"),
    pytest.param({"unit_id": "u1", "name": "p", "ts": "yesterday"}, "ts", id="bad-timestamp"),
    pytest.param(
        {"unit_id": "u1", "name": "p", "ts": "2026-11-26T10:00:00"},
        "ts",
        id="timestamp-without-zone",
    ),
    pytest.param([], None, id="empty-list"),
    pytest.param(3, "body", id="neither-object-nor-list"),
    pytest.param([{"unit_id": "u1", "name": "p"}] * 1001, None, id="too-many-events"),
]


@pytest.mark.parametrize(("body", "field"), EVENT_CASES)
async def test_bad_events_are_refused_whole_and_nothing_is_recorded(
    gateway_settings, archive_dir, body, field
):
    async with running_app(gateway_settings) as (_, client):
        r = await client.post("/v1/events", json=body)
    assert r.status_code == 400, r.text
    assert r.json().get("field") == field
    assert read_archive(archive_dir) == []


async def test_a_list_of_events_is_answered_element_by_element(gateway_settings, archive_dir):
    body = [
        {"unit_id": "u1", "name": "p", "event_id": "e-1"},
        {"unit_id": "u2"},
        "not an event",
        {"unit_id": "u3", "name": "p", "ts": "yesterday"},
        {"unit_id": "u4", "name": "p", "value": 2},
    ]
    async with running_app(gateway_settings) as (_, client):
        r = await client.post("/v1/events", json=body)
    assert r.status_code == 202, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"], answer["dropped"]) == (2, 3, 0)
    results = answer["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3, 4]
    assert [x["status"] for x in results] == [
        "accepted", "rejected", "rejected", "rejected", "accepted"
    ]  # fmt: skip
    assert results[0]["event_id"] == "e-1"
    assert [x.get("field") for x in results[1:4]] == ["[1].name", "[2]", "[3].ts"]
    assert all(x["detail"] for x in results[1:4])
    archived = [e["jsonPayload"] for e in read_archive(archive_dir)]
    assert sorted(e["unit_id"] for e in archived) == ["u1", "u4"]
    assert {e["event_id"] for e in archived} == {"e-1", results[4]["event_id"]}


async def test_unknown_route_and_method_are_problem_responses(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        missing = await client.get("/v2/nothing")
        method = await client.get("/v1/recommendations")
    assert (
        missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    )
    assert method.status_code == 405 and method.json()["status"] == 405
