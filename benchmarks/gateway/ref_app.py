"""The reference for gateway benchmarks: the least an answer can cost on this stack.

Starlette + uvicorn + redis.asyncio + orjson, and nothing else: parse the body, hash the unit
into a variant, one Redis GET of the stored JSON list of ``{"id", "score"}`` items, drop the
exclusions, answer the first ``limit``. No auth, logging, metrics or fallback. The benchmark
(benchmarks/gateway/__main__.py) seeds ``ref:{variant}:{unit_id}`` with the same lists the gateway
serves (benchmarks/gateway/data.py) and compares the gateway with this app in one run.

Run:  REF_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn --factory benchmarks.gateway.ref_app:create_app \\
      --port 8001 --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator

import orjson
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

VARIANTS = ("control", "treatment")


def variant_of(unit_id: str, salt: str = "ref") -> str:
    """The reference's 50/50 split: DESIGN.md's bucket of ``salt:unit_id``, below 5000 control."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()[:8], "big") % 10000
    return VARIANTS[0] if h < 5000 else VARIANTS[1]


def create_app() -> Starlette:
    """The app; its Redis pool is made in the lifespan (``REF_REDIS_URL``)."""
    url = os.environ.get("REF_REDIS_URL", "redis://127.0.0.1:6379/0")
    pools: list[aioredis.Redis] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # redis-py 8 caps a pool at 100 connections and fails the 101st request
        # (MaxConnectionsError, a 500); a blocking pool of the same size makes it wait instead, as
        # a service would be configured: at 256 open requests the reference queues, not fails.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=100, timeout=5)
        pools.append(aioredis.Redis.from_pool(pool))  # owns it: aclose() disconnects it
        try:
            yield
        finally:
            await pools[0].aclose()

    async def recommend(request: Request) -> Response:
        body = orjson.loads(await request.body())
        unit_id = body["unit_id"]
        variant = variant_of(unit_id)
        raw = await pools[0].get(f"ref:{variant}:{unit_id}")
        items = orjson.loads(raw) if raw else []
        excluded = set(body.get("exclude", ()))
        limit = body.get("limit", 10)
        out = [it for it in items if it["id"] not in excluded][:limit]
        return Response(
            orjson.dumps({"unit_id": unit_id, "variant": variant, "items": out}),
            media_type="application/json",
        )

    return Starlette(
        routes=[Route("/v1/recommendations", recommend, methods=["POST"])], lifespan=lifespan
    )
