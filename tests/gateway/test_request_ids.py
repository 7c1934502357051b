"""X-Request-ID: printable ASCII comes back as sent; anything else is replaced, never mangled."""

from __future__ import annotations

import re

import pytest

from tests.gateway.helpers import running_app

GENERATED = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("café-1".encode(), id="utf-8"),
        pytest.param("café-1".encode("latin-1"), id="latin-1"),
        pytest.param(b"a\x7fb", id="DEL"),
        pytest.param(b"x" * 129, id="too-long"),
    ],
)
async def test_a_request_id_outside_printable_ascii_is_replaced(gateway_settings, given):
    body = {"surface": "home_top", "unit_id": "u1"}
    async with running_app(gateway_settings) as (_, client):
        rec = await client.post("/v1/recommendations", json=body, headers={"x-request-id": given})
        health = await client.get("/healthz", headers={"x-request-id": given})
    assert GENERATED.match(rec.headers["x-request-id"])
    assert rec.json()["request_id"] == rec.headers["x-request-id"]
    assert GENERATED.match(health.headers["x-request-id"])


async def test_a_printable_ascii_request_id_comes_back_as_sent(gateway_settings):
    given = "trace 7/ab:c~" + "x" * 115  # 128 characters, spaces and punctuation included
    async with running_app(gateway_settings) as (_, client):
        rec = await client.post(
            "/v1/recommendations",
            json={"surface": "home_top", "unit_id": "u1"},
            headers={"x-request-id": given},
        )
    assert rec.headers["x-request-id"] == given == rec.json()["request_id"]
