"""The reference app's Postgres twin: the least an answer read from Postgres can cost.

Same work as benchmarks/gateway/ref_app.py (parse, hash the unit into a variant, read one
list, drop exclusions, answer the first ``limit``), but the read is one primary-key SELECT
through an asyncpg pool on the gateway's own ``results`` table, so both read the same rows.
The benchmark compares it with the gateway's cold-cache path.

Run:  REF_PG_DSN=postgresql://postgres@127.0.0.1:5432/test REF_PG_SCHEMA=abgate_loadbench \\
      REF_PG_MODEL=home_recs uvicorn --factory benchmarks.gateway.ref_pg_app:create_app --port 8002 \\
      --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.gateway.ref_app import VARIANTS, variant_of

VERSIONS = ("1", "2")  # control, treatment
_QUERY = "SELECT items::text FROM results WHERE model = $1 AND version = $2 AND unit_id = $3"


def version_of(unit_id: str) -> str:
    """The reference's 50/50 split (``ref_app.variant_of``): control reads 1, treatment 2."""
    return VERSIONS[VARIANTS.index(variant_of(unit_id))]


def create_app() -> Starlette:
    """The app; the pool is made in the lifespan (10 connections, as the gateway's default)."""
    dsn = os.environ.get("REF_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    schema = os.environ.get("REF_PG_SCHEMA", "abgate")
    model = os.environ.get("REF_PG_MODEL", "home_recs")
    pools: list[asyncpg.Pool] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            dsn, min_size=10, max_size=10, server_settings={"search_path": schema}
        )
        pools.append(pool)
        try:
            yield
        finally:
            await pool.close()

    async def recommend(request: Request) -> Response:
        body = orjson.loads(await request.body())
        unit_id = body["unit_id"]
        version = version_of(unit_id)
        raw = await pools[0].fetchval(_QUERY, model, version, unit_id)
        items = orjson.loads(raw) if raw else []
        excluded = set(body.get("exclude", ()))
        limit = body.get("limit", 10)
        out = [it for it in items if it["id"] not in excluded][:limit]
        return Response(
            orjson.dumps({"unit_id": unit_id, "version": version, "items": out}),
            media_type="application/json",
        )

    return Starlette(
        routes=[Route("/v1/recommendations", recommend, methods=["POST"])], lifespan=lifespan
    )
