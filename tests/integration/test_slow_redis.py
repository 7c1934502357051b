"""A slow Redis under open-loop load: answers fall through to Postgres within the time budget.

A private redis-server sits behind a small asyncio TCP proxy that can hold every Redis reply
for ``delay`` seconds. A real gateway (``abgate serve``, uvicorn on a free port) reads through
the proxy, with the in-process cache off so every request asks Redis. Once the gateway has
cached its units in Redis, the proxy starts delaying replies by 20x the gateway's Redis timeout,
and an open-loop load (requests sent on a fixed schedule, whatever the answers do) runs.

The bound: a request waits for Redis at most ``ABGATE_REDIS_TIMEOUT`` (then the breaker skips
Redis for ``ABGATE_REDIS_RETRY_AFTER``), then reads Postgres. So every latency must stay below
the Redis timeout plus a Postgres read plus HTTP, and far below the injected delay: an answer
that waited for Redis would take at least ``delay``. The Postgres read and HTTP get a generous
allowance (SLACK) because the machine's two cores are shared with other jobs; the assertion
that matters is p99 < timeout + SLACK < delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter

import httpx
import pytest

from abgate.embedded import RedisProcess, free_port
from tests.gateway.helpers import load_demo_data, read_archive, write_config
from tests.integration.load import gateway, open_loop, p99
from tests.integration.test_serve_process import _gateway_env

pytestmark = pytest.mark.slow

REDIS_TIMEOUT = 0.1  # ABGATE_REDIS_TIMEOUT of the gateway under test
DELAY = 20 * REDIS_TIMEOUT  # what the proxy adds to every Redis reply during the fault
SLACK = 0.6  # a Postgres read and HTTP on a shared, busy 2-core machine, generously
RATE = 50  # requests per second, open loop (the client shares the machine with the gateway)
SECONDS = 3.0
UNITS = 20


class LatencyProxy:
    """A TCP proxy to ``upstream``: client bytes go through at once, replies after ``delay``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.delay = 0.0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> LatencyProxy:
        """Serve on a loop of its own, in a thread: the load generator's loop is busy, and a
        proxy sharing it would add its own latency to Redis before any is injected."""
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._client, "127.0.0.1", self.port)
            )
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        started.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        for task in (
            self._pipe(reader, up_writer, delayed=False),
            self._pipe(up_reader, writer, delayed=True),
        ):
            t = asyncio.create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                if delayed and self.delay:
                    # each chunk leaves `delay` after it arrived, in order, without blocking
                    # the chunks behind it: latency injected, not bandwidth
                    at = loop.time() + self.delay
                    await asyncio.sleep(max(0.0, at - loop.time()))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def test_a_slow_redis_falls_through_to_postgres_within_the_timeout_budget(
    pg_dsn, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=UNITS)
    write_config(experiments_dir)
    redis = RedisProcess(tmp_path / "redis")
    try:
        with LatencyProxy(redis.port) as proxy:
            env, url = _gateway_env(
                pg_dsn, proxy.url, schema, redis_prefix, experiments_dir, archive_dir
            )
            env |= {
                "ABGATE_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
                "ABGATE_LOCAL_CACHE_SIZE": "0",  # every request asks Redis
            }
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with (
                gateway(env, url, tmp_path / "serve.log"),
                httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client,
            ):
                warm = await open_loop(client, RATE, 1.0, UNITS)  # fills Redis
                # the fills run after the answers: wait until Redis answers for every unit
                for _ in range(100):
                    r = await client.post(
                        "/v1/recommendations", json={"surface": "home_top", "unit_id": "u0"}
                    )
                    if r.json()["source"] == "cache":
                        break
                    await asyncio.sleep(0.05)  # polling another process's background fill
                healthy = await open_loop(client, RATE, 1.0, UNITS)
                proxy.delay = DELAY
                t = time.monotonic()
                slow = await open_loop(client, RATE, SECONDS, UNITS)
                elapsed = time.monotonic() - t
                proxy.delay = 0.0
    finally:
        redis.stop()

    healthy_sources = Counter(str(body.get("source")) for _, _, body in healthy)
    assert healthy_sources["cache"] >= 0.9 * len(healthy), healthy_sources
    statuses = Counter(s for s, _, _ in slow)
    sources = Counter(str(body.get("source")) for _, _, body in slow)
    latencies = [lat for _, lat, _ in slow]
    budget = REDIS_TIMEOUT + SLACK
    print(
        f"\nslow Redis (+{DELAY:.1f} s per reply, timeout {REDIS_TIMEOUT} s): "
        f"{len(slow)} requests at {RATE}/s over {elapsed:.1f} s; statuses {dict(statuses)}; "
        f"sources {dict(sources)}; p50 {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms, "
        f"p99 {p99(latencies) * 1000:.0f} ms, max "
        f"{max(latencies) * 1000:.0f} ms (budget {budget * 1000:.0f} ms)"
    )
    assert statuses == {200: len(slow)}  # 0 5xx
    assert sources == {"db": len(slow)}  # through to Postgres, never the fallback list
    assert p99(latencies) < budget < DELAY

    served = [body["request_id"] for _, _, body in warm + healthy + slow]
    logged = [
        e["jsonPayload"]["request_id"]
        for e in read_archive(archive_dir)
        if e["jsonPayload"]["type"] == "exposure"
    ]
    assert len(logged) == len(set(logged))  # none duplicated
    assert set(served) <= set(logged)  # none lost (the poll's requests are logged too)
