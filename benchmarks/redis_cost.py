"""What one Redis GET of a stored list costs the gateway's process, by client path.

``python -m benchmarks.redis_cost [--redis-url URL] [--n 20000]`` prints microseconds of
wall time per GET (one process, one event loop: with Redis on the other core this is close
to the client's CPU cost) for:

- redis.asyncio (hiredis parser), one GET at a time, then 32 concurrent tasks on its pool;
- a minimal RESP client (asyncio protocol + hiredis.Reader) on ONE connection, 32 GETs in
  flight (requests pipelined on the socket, answers matched in order);
- one MGET of 32 keys per call: what the gateway pays, since it coalesces the GETs of one
  event-loop turn into one MGET (gateway/coalesce.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
from time import perf_counter

import hiredis
import redis.asyncio as aioredis

from loadtests.runner import run

PREFIX = "abgate-redis-cost:"


class _Resp(asyncio.Protocol):
    """GETs pipelined on one connection; answers resolve the oldest waiter."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[object]] = collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.waiters.popleft().set_result(reply)

    def command(self, *args: bytes) -> asyncio.Future[object]:
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        parts = [b"*%d\r\n" % len(args)]
        parts += [b"$%d\r\n%s\r\n" % (len(a), a) for a in args]
        if self.transport is not None:
            self.transport.write(b"".join(parts))
        return fut

    def get(self, key: bytes) -> asyncio.Future[object]:
        return self.command(b"GET", key)


async def _concurrent(n: int, tasks: int, get: object) -> float:
    per = n // tasks

    async def worker(w: int) -> None:
        for i in range(per):
            await get(f"{PREFIX}{(w * per + i) % 1000}".encode())  # type: ignore[operator]

    t = perf_counter()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return (perf_counter() - t) / (per * tasks) * 1e6


async def measure(url: str, n: int, size: int) -> dict[str, float]:
    """Microseconds per GET by client path."""
    client = aioredis.from_url(url, max_connections=64)
    value = b"x" * size
    await client.mset({f"{PREFIX}{i}": value for i in range(1000)})
    out: dict[str, float] = {}
    try:
        t = perf_counter()
        for i in range(n // 4):
            await client.get(f"{PREFIX}{i % 1000}")
        out["redis.asyncio, sequential"] = (perf_counter() - t) / (n // 4) * 1e6
        out["redis.asyncio, 32 concurrent"] = await _concurrent(n, 32, client.get)
        kw = client.connection_pool.connection_kwargs
        transport, proto = await asyncio.get_running_loop().create_connection(
            _Resp, kw.get("host", "127.0.0.1"), kw.get("port", 6379)
        )
        await proto.command(b"SELECT", str(kw.get("db", 0)).encode())
        out["raw RESP + hiredis, 1 connection, 32 in flight"] = await _concurrent(n, 32, proto.get)
        transport.close()
        keys = [f"{PREFIX}{i}" for i in range(32)]
        t = perf_counter()
        for _ in range(n // 32):
            await client.mget(keys)
        out["redis.asyncio MGET of 32 keys, per key"] = (perf_counter() - t) / (n // 32 * 32) * 1e6
    finally:
        await client.delete(*(f"{PREFIX}{i}" for i in range(1000)))
        await client.aclose()
    return out


def main() -> None:
    """Print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--size", type=int, default=2_700, help="value bytes (a 100-item list)")
    args = p.parse_args()
    for name, us in run(measure(args.redis_url, args.n, args.size)).items():
        print(f"{us:8.1f} us/GET  {name}")


if __name__ == "__main__":
    main()
