"""abgate/logs.py: JSON lines with Cloud Logging's fields, the request's trace included."""

from __future__ import annotations

import io
import json
import logging

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from abgate.logs import TraceContext, parse_trace_header

log = logging.getLogger("abgate.test.trace")


def _app_logging_one_line() -> Starlette:
    async def hello(request):  # type: ignore[no-untyped-def]
        log.warning("inside a request", extra={"unit_id": "u-1"})
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", hello)])


async def _lines(headers: dict[str, str]) -> list[dict[str, object]]:
    from abgate.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.propagate = False
    try:
        app = TraceContext(_app_logging_one_line(), "my-project")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/", headers=headers)).status_code == 200
        log.warning("outside any request")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_line_logged_during_a_request_carries_its_cloud_trace():
    inside, outside = await _lines(
        {"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}
    )
    assert inside["logging.googleapis.com/trace"] == (
        "projects/my-project/traces/105445aa7843bc8bf206b12000100000"
    )
    assert inside["logging.googleapis.com/spanId"] == "0000000000000001"
    assert inside["logging.googleapis.com/trace_sampled"] is True
    assert inside["severity"] == "WARNING" and inside["message"] == "inside a request"
    assert inside["unit_id"] == "u-1"
    assert inside["time"].endswith("Z") and len(inside["time"]) == len("2026-11-27T17:00:00.000Z")
    assert not any(k.startswith("logging.googleapis.com/") for k in outside)


async def test_traceparent_is_read_when_there_is_no_cloud_header():
    (inside, _) = await _lines(
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}
    )
    assert inside["logging.googleapis.com/trace"].endswith("/4bf92f3577b34da6a3ce929d0e0e4736")
    assert inside["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert inside["logging.googleapis.com/trace_sampled"] is False


async def test_a_request_without_a_trace_header_logs_no_trace_fields():
    inside, _ = await _lines({})
    assert not any(k.startswith("logging.googleapis.com/") for k in inside)


def test_malformed_trace_headers_are_ignored():
    for cloud, parent in [
        ("not-hex/1;o=1", None),
        ("105445aa/1", None),
        (None, "00-xyz-00f067aa0ba902b7-01"),
        (None, "00-4bf92f3577b34da6a3ce929d0e0e4736-short-01"),
    ]:
        assert parse_trace_header(cloud, parent, "p") is None
    # A span that is not a decimal number keeps the trace, without a span.
    assert parse_trace_header("105445aa7843bc8bf206b12000100000/x", None, "p") == (
        "projects/p/traces/105445aa7843bc8bf206b12000100000",
        None,
        False,
    )
