"""Scheduling and measuring: request counts, warm-up, errors, coordinated omission.

No timing assertions that a busy 2-core machine could break: counts, and latencies compared
with margins of several times.
"""

from __future__ import annotations

import asyncio
import socket

from loadtests import Scenario, run_closed_loop, run_open_loop
from loadtests.stub_server import StubServer


async def test_open_loop_sends_the_scheduled_number_of_requests(stub: StubServer) -> None:
    result = await run_open_loop(stub.url, Scenario(seed=1), rate=200, duration=1.0)

    assert result.scheduled == 200
    assert stub.requests == 200
    assert result.statuses == {200: 200}
    assert result.errors == {}
    assert result.failed == 0


async def test_warmup_requests_are_sent_but_not_measured(stub: StubServer) -> None:
    result = await run_open_loop(stub.url, Scenario(), rate=100, duration=1.0, warmup=0.5)

    assert stub.requests == 150
    assert result.scheduled == 100
    assert result.responses == 100


async def test_open_loop_throughput_is_close_to_the_rate_the_server_keeps_up_with(
    stub: StubServer,
) -> None:
    result = await run_open_loop(stub.url, Scenario(), rate=300, duration=1.0)

    assert 150 < result.throughput <= 301


async def test_open_loop_latency_includes_the_queueing_of_a_stalled_server(
    stub: StubServer,
) -> None:
    """The server holds every answer for 0.6 s in the middle of a 2 s run. Requests that
    arrived meanwhile waited up to 0.6 s: about a quarter of all requests, so p90 is
    hundreds of milliseconds. A closed loop stalls too, but sends only ``concurrency``
    requests during the stall, so its p90 hides it (coordinated omission)."""

    async def stall() -> None:
        await asyncio.sleep(0.5)
        stub.pause()
        await asyncio.sleep(0.6)
        stub.resume()

    stalling = asyncio.create_task(stall())
    open_result = await run_open_loop(stub.url, Scenario(), rate=200, duration=2.0, concurrency=4)
    await stalling
    stalling = asyncio.create_task(stall())
    closed_result = await run_closed_loop(stub.url, Scenario(), duration=2.0, concurrency=4)
    await stalling

    assert open_result.responses == 400
    assert open_result.latency_ms["p90"] > 150
    assert open_result.latency_ms["max"] > 300
    assert closed_result.latency_ms["max"] > 300  # the closed loop did see the stall...
    assert closed_result.latency_ms["p90"] < open_result.latency_ms["p90"] / 3  # ...and hid it


async def test_requests_that_get_no_answer_count_as_timeouts(stub: StubServer) -> None:
    stub.pause()
    result = await run_open_loop(
        stub.url, Scenario(), rate=20, duration=0.5, concurrency=10, timeout=0.3
    )

    assert result.scheduled == 10
    assert result.responses == 0
    assert result.errors == {"timeout": 10}
    assert result.failed == 10


async def test_non_2xx_statuses_are_counted_as_failures() -> None:
    server = StubServer(status=503)
    await server.start()
    try:
        result = await run_open_loop(server.url, Scenario(), rate=50, duration=0.5)
    finally:
        await server.stop()

    assert result.statuses == {503: 25}
    assert result.ok == 0
    assert result.failed == 25
    assert result.throughput == 0


async def test_a_refused_connection_is_an_error_not_a_crash() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nobody listens once the socket closes
    url = f"http://127.0.0.1:{port}/v1/recommendations"

    result = await run_open_loop(url, Scenario(), rate=20, duration=0.5, concurrency=2)

    assert result.errors == {"ConnectError": 10}
    assert result.responses == 0


async def test_closed_loop_keeps_every_worker_busy(stub: StubServer) -> None:
    result = await run_closed_loop(stub.url, Scenario(), duration=0.5, concurrency=8)

    assert result.mode == "closed"
    assert result.scheduled == result.responses == stub.requests
    assert result.responses > 100  # a local stub answers thousands per second
    assert result.errors == {}
