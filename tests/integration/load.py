"""Load for fault tests: a real ``abgate serve`` and an open-loop client (asyncio + httpx)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_serve_process import _serve, _wait_ready


@contextlib.asynccontextmanager
async def gateway(env: dict[str, str], url: str, log: Path) -> AsyncIterator[None]:
    """``abgate serve`` with ``env`` until the block ends, then SIGTERM (every record flushed)."""
    proc = _serve(env, log)
    try:
        # the proxy runs on this loop: wait for readiness in a thread so it keeps serving
        await asyncio.to_thread(_wait_ready, url, proc, log)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)  # flushes every accepted record
        await asyncio.to_thread(proc.wait, 30)


Result = tuple[int, float, dict[str, Any]]  # status, latency (s), JSON body


async def open_loop(
    client: httpx.AsyncClient,
    rate: float,
    seconds: float,
    units: int,
    headers: dict[str, str] | None = None,
    on_answer: Callable[[float, httpx.Response], None] | None = None,
) -> list[Result]:
    """Send ``rate`` home_top requests a second for ``seconds`` on a fixed schedule; each
    latency is measured from the request's scheduled time (no coordinated omission).
    ``on_answer(scheduled_at, response)`` sees each answer as it comes."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int) -> Result:
        at = start + i / rate
        await asyncio.sleep(max(0.0, at - loop.time()))
        body = {"surface": "home_top", "unit_id": f"u{i % units}"}
        r = await client.post("/v1/recommendations", json=body, headers=headers)
        if on_answer is not None:
            on_answer(at, r)
        return r.status_code, loop.time() - at, r.json()

    return await asyncio.gather(*(one(i) for i in range(int(rate * seconds))))


def p99(latencies: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
