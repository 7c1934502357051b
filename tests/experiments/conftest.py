"""Fixtures of the experiments tests: a migrated pool on this test's schema, loaded models."""

from __future__ import annotations

import json

import asyncpg
import pytest

from experiments.config import parse_surfaces_file
from experiments.store import PostgresExperimentStore
from tests.experiments.helpers import SURFACES


async def load_model(
    pool: asyncpg.Pool, model: str, version: str, *, default: bool = True, status: str = "active"
) -> None:
    """Register a model version as batch loading would (results rows are not needed here)."""
    items = json.dumps([{"id": "sku-1", "score": 1.0}] if default else [])
    await pool.execute(
        "INSERT INTO model_versions (model, version, status, default_items, unit_count) VALUES ($1, $2, $3, $4::jsonb, 1)"
        " ON CONFLICT (model, version) DO UPDATE SET status = EXCLUDED.status, default_items = EXCLUDED.default_items",
        model,
        version,
        status,
        items,
    )


@pytest.fixture
async def store(pool: asyncpg.Pool) -> PostgresExperimentStore:
    """A store with the helpers' surfaces and layer, and home_recs 1 and 7 loaded."""
    s = PostgresExperimentStore(pool)
    await s.apply_surfaces(parse_surfaces_file(SURFACES), author="fixture")
    for version in ("1", "7"):
        await load_model(pool, "home_recs", version)
    await load_model(pool, "cart_recs", "1")
    return s
