"""Slowloris under open-loop load: connections that send headers slowly harm no one else.

CONNECTIONS sockets each send a request line and half a header, then a byte now and then,
never finishing, and reconnect when closed, so the fault lasts as long as the load; meanwhile an open-loop load runs against the same ``abgate serve``. Every
request of the load must be answered 200, logged once, with a p99 that stays low; the gateway
closes the slow connections at its header timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import httpx
import pytest

from tests.gateway.helpers import load_demo_data, read_archive, write_config
from tests.integration.load import gateway, open_loop, p99
from tests.integration.test_serve_process import _gateway_env

pytestmark = pytest.mark.slow

CONNECTIONS = 300
RATE = 40
SECONDS = 5.0
UNITS = 20
HEADER_TIMEOUT = 2.0  # ABGATE_HEADER_TIMEOUT of the gateway under test


async def slow_client(port: int, stop: asyncio.Event) -> int:
    """Until ``stop``: send half a request, then one header byte every 0.5 s; when the gateway
    closes the connection, open another (the fault lasts as long as the load). Returns how many
    connections the gateway closed."""
    closed = 0
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST /v1/recommendations HTTP/1.1\r\nhost: gw\r\nx-slow: ")
            await writer.drain()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), timeout=0.5) == b"":
                        closed += 1  # EOF: closed by the gateway
                        break
                writer.write(b"a")
                await writer.drain()
        except ConnectionError:
            closed += 1
        finally:
            writer.close()
    return closed


async def test_slow_header_connections_do_not_slow_or_fail_other_callers(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=UNITS)
    write_config(experiments_dir)
    env, url = _gateway_env(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    env |= {"ABGATE_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    port = int(url.rsplit(":", 1)[1])
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        gateway(env, url, tmp_path / "serve.log"),
        httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client,
    ):
        slow = [asyncio.create_task(slow_client(port, stop)) for _ in range(CONNECTIONS)]
        await asyncio.sleep(0.2)  # let them connect: the fault precedes the load, by design
        load = await open_loop(client, RATE, SECONDS, UNITS)
        stop.set()
        closed = await asyncio.gather(*slow)
    statuses = Counter(s for s, _, _ in load)
    sources = Counter(str(b.get("source")) for _, _, b in load)
    lat = [x for _, x, _ in load]
    print(
        f"\nslowloris: {CONNECTIONS} connections trickling headers, header timeout "
        f"{HEADER_TIMEOUT} s; load {len(load)} requests at {RATE}/s: statuses {dict(statuses)}, "
        f"sources {dict(sources)}, p99 {p99(lat) * 1000:.0f} ms; closed by the gateway "
        f"{sum(closed)} over {SECONDS:g} s ({CONNECTIONS} at a time)"
    )
    assert statuses == {200: len(load)}  # 0 5xx, nothing refused
    assert "fallback" not in sources
    # trickling bytes does not extend the header timeout: each slow client was cut off at
    # least once per HEADER_TIMEOUT (SECONDS / HEADER_TIMEOUT = 2 rounds at the least)
    assert min(closed) >= int(SECONDS // HEADER_TIMEOUT), Counter(closed)
    served = [b["request_id"] for _, _, b in load]
    logged = [
        e["jsonPayload"]["request_id"]
        for e in read_archive(archive_dir)
        if e["jsonPayload"]["type"] == "exposure"
    ]
    assert sorted(logged) == sorted(served)  # none lost, none duplicated
