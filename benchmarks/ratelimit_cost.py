"""What a per-key rate check costs: the in-process token bucket against one shared in Redis.

``python -m benchmarks.ratelimit_cost [--redis-url URL]``: times N checks of each, one at a time
as the request path would make them, and prints microseconds per check. The Redis variant is the
usual token bucket in one Lua script (EVALSHA: read, refill, take, write, with PEXPIRE).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as aioredis

LUA = """
local t = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(t[1]) or burst
local stamp = tonumber(t[2]) or now
tokens = math.min(burst, tokens + (now - stamp) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1 ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', now)
redis.call('PEXPIRE', KEYS[1], 60000)
return ok
"""


class Bucket:
    """The same arithmetic as gateway/ratelimit.py:TokenBucket (loadtests talks HTTP only)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, 0.0

    def take(self, now: float) -> float:
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


async def main(url: str, n: int) -> None:
    bucket = Bucket(1e9, 1e9)
    started = time.perf_counter()
    for _ in range(n):
        bucket.take(time.perf_counter())
    local = (time.perf_counter() - started) / n * 1e6
    client = aioredis.from_url(url)
    try:
        sha = await client.script_load(LUA)
        key = "abgate-bench:ratelimit"
        started = time.perf_counter()
        for _ in range(n):
            await client.evalsha(sha, 1, key, 1e9, 1e9, time.time())
        shared = (time.perf_counter() - started) / n * 1e6
        await client.delete(key)
    finally:
        await client.aclose()
    print(f"in-process token bucket: {local:.2f} µs per check ({n:,} checks)")
    print(f"Redis token bucket (EVALSHA): {shared:.1f} µs per check, one round trip each")
    print(f"ratio: {shared / local:,.0f}x")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("-n", type=int, default=20_000)
    a = p.parse_args()
    asyncio.run(main(a.redis_url, a.n))
