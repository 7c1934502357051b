"""Slow and greedy clients against a real uvicorn server with the options of ``abgate serve``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from tests.e2e.helpers import serving
from tests.gateway.helpers import load_demo_data, settings_for, write_config

pytestmark = pytest.mark.slow

REQUEST = b'{"surface":"home_top","unit_id":"u1"}'
# Generous: the point is that the server closes, not how fast (the bound is docs/operators.md's).
CLOSED_WITHIN = 20.0


@pytest.fixture
async def settings(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir):
    await load_demo_data(pg_dsn, schema, units=5)
    write_config(experiments_dir)
    return settings_for(
        pg_dsn,
        redis_url,
        schema,
        redis_prefix,
        experiments_dir,
        archive_dir,
        header_timeout=0.5,
        body_timeout=0.5,
        max_concurrency=4,
    )


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (fails if it never does)."""
    return await asyncio.wait_for(reader.read(), CLOSED_WITHIN)


def post(body: bytes, declared: int | None = None) -> bytes:
    length = len(body) if declared is None else declared
    return (
        b"POST /v1/recommendations HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % length
    ) + body


async def test_a_request_whose_headers_stall_is_closed_and_others_are_served(settings):
    async with serving(settings) as url, connection(url) as (reader, writer):
        writer.write(b"POST /v1/recommendations HTTP/1.1\r\nhost: gw\r\ncontent-le")
        await writer.drain()
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post("/v1/recommendations", content=REQUEST)
        assert r.status_code == 200
        assert await closed_by_server(reader) == b""


async def test_a_request_whose_body_stalls_is_closed(settings):
    async with serving(settings) as url, connection(url) as (reader, writer):
        writer.write(post(REQUEST[:10], declared=len(REQUEST)))
        await writer.drain()
        answer = await closed_by_server(reader)
    assert b"200 OK" not in answer


async def test_a_silent_connection_is_closed(settings):
    async with serving(settings) as url, connection(url) as (reader, _):
        assert await closed_by_server(reader) == b""


async def test_a_kept_alive_connection_still_serves_requests_in_time(settings):
    async with serving(settings) as url, connection(url) as (reader, writer):
        for _ in range(3):
            writer.write(post(REQUEST))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = orjson.loads(await reader.readexactly(length))
            assert head.startswith(b"HTTP/1.1 200") and body["unit_id"] == "u1"


async def test_over_the_concurrency_limit_a_request_gets_a_fast_503(settings):
    settings = settings.model_copy(update={"body_timeout": 60.0})
    async with serving(settings) as url:
        async with contextlib.AsyncExitStack() as stack:
            # Four requests in flight: each has sent its headers and waits on its body.
            for _ in range(4):
                _, writer = await stack.enter_async_context(connection(url))
                writer.write(post(b"{", declared=len(REQUEST)))
                await writer.drain()
            async with httpx.AsyncClient(base_url=url) as client:
                async with asyncio.timeout(CLOSED_WITHIN):
                    while (await client.get("/healthz")).status_code != 503:
                        await asyncio.sleep(0.01)  # until the server has seen all four
                refused = await client.post("/v1/recommendations", content=REQUEST)
        async with httpx.AsyncClient(base_url=url) as client, asyncio.timeout(CLOSED_WITHIN):
            while (
                after := await client.post("/v1/recommendations", content=REQUEST)
            ).status_code == 503:
                await asyncio.sleep(0.01)  # until the stalled requests have ended
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["connection"] == "close"
    assert refused.json()["type"] == "https://abgate.dev/problems/overloaded"
    assert after.status_code == 200  # the limit frees as requests end


async def test_a_connection_pipelining_too_many_requests_is_closed(settings):
    async with serving(settings) as url, connection(url) as (reader, writer):
        writer.write(post(REQUEST) * 8)  # within the cap: all answered, in order
        await writer.drain()
        for _ in range(8):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200")
        writer.write(post(REQUEST) * 200)  # 200 parsed at once would be 200 queued requests
        await writer.drain()
        rest = await closed_by_server(reader)
    assert rest.count(b"HTTP/1.1 200") < 200
