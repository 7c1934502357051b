"""Fixtures of the gateway tests."""

from __future__ import annotations

import pytest

from experiments.settings import Settings
from tests.gateway.helpers import load_demo_data, settings_for, write_config


@pytest.fixture
async def small_gateway_settings(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir
) -> Settings:
    """A gateway over five units of the demo data and the standard configuration folder."""
    await load_demo_data(pg_dsn, schema, units=5)
    write_config(experiments_dir)
    return settings_for(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
