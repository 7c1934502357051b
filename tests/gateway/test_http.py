"""The shared HTTP plumbing: one body reader and one request observer for every endpoint."""

from __future__ import annotations

import pytest

from gateway.errors import PayloadTooLarge
from gateway.http import read_body
from tests.gateway.helpers import running_app


def chunks(*parts: bytes, disconnect: bool = False):
    """An ASGI ``receive`` that hands over ``parts`` as one streamed body."""
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive():
        return messages.pop(0)

    return receive


async def test_a_streamed_body_is_joined_from_its_chunks() -> None:
    assert await read_body(chunks(b'{"a"', b":1}"), None, 100) == b'{"a":1}'


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    async def receive():
        raise AssertionError("the body was read")

    with pytest.raises(PayloadTooLarge, match="the body has 101 bytes; at most 100"):
        await read_body(receive, b"101", 100)


async def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="larger than 10 bytes"):
        await read_body(chunks(b"x" * 6, b"x" * 6, b"never read"), None, 10)


async def test_a_client_that_goes_away_ends_the_body() -> None:
    assert await read_body(chunks(b"part", disconnect=True), None, 100) == b"part"


async def test_events_are_counted_and_carry_a_request_id(gateway_settings) -> None:
    event = {"unit_id": "u1", "name": "purchase"}
    async with running_app(gateway_settings) as (_, client):
        ok = await client.post("/v1/events", json=[event], headers={"x-request-id": "ev-1"})
        bad = await client.post("/v1/events", content=b"not json")
        wrong_method = await client.get("/v1/events")
        metrics = (await client.get("/metrics")).text
    assert (ok.status_code, bad.status_code, wrong_method.status_code) == (202, 400, 405)
    assert ok.headers["x-request-id"] == "ev-1"
    assert len(bad.headers["x-request-id"]) == 32
    assert 'abgate_requests_total{endpoint="events",status="202"} 1.0' in metrics
    assert 'abgate_requests_total{endpoint="events",status="400"} 1.0' in metrics
    assert 'status="405"' not in metrics  # only POST /v1/events is the events endpoint
    assert 'abgate_request_seconds_count{endpoint="events"} 2.0' in metrics
