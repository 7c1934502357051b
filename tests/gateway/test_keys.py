"""API keys: hashed in Postgres, scoped to surfaces, rate limited, revoked while serving."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest
from typer.testing import CliRunner

from abgate.cli import app as cli_app
from experiments.store import PostgresKeyStore, create_pool
from tests.gateway.helpers import load_demo_data, running_app, settings_for, write_config

BODY = {"surface": "home_top", "unit_id": "u1"}


@pytest.fixture
async def keyed(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir):
    await load_demo_data(pg_dsn, schema, units=5)
    write_config(experiments_dir)
    pool = await create_pool(pg_dsn, schema)
    settings = settings_for(
        pg_dsn,
        redis_url,
        schema,
        redis_prefix,
        experiments_dir,
        archive_dir,
        api_keys=True,
        api_tokens="static-token",
        config_poll_interval=30.0,  # a revocation must arrive by NOTIFY, not by the poll
    )
    try:
        yield settings, PostgresKeyStore(pool)
    finally:
        await pool.close()


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def test_a_key_serves_its_surfaces_only_and_is_stored_hashed(keyed, pg_dsn, schema):
    settings, store = keyed
    _, secret = await store.create("checkout", ["home_top"], None, actor="ana", host="laptop")
    async with running_app(settings) as (_, client):
        ok = await client.post("/v1/recommendations", json=BODY, headers=bearer(secret))
        other = await client.post(
            "/v1/recommendations",
            json={"surface": "cart_upsell", "unit_id": "u1"},
            headers=bearer(secret),
        )
        unknown = await client.post("/v1/recommendations", json=BODY, headers=bearer(secret + "x"))
        token = await client.post("/v1/recommendations", json=BODY, headers=bearer("static-token"))
        events = await client.post(
            "/v1/events", json={"unit_id": "u1", "name": "click"}, headers=bearer(secret)
        )
    assert ok.status_code == 200
    assert other.status_code == 403 and other.json()["type"].endswith("/forbidden")
    assert unknown.status_code == 401
    assert token.status_code == 200  # ABGATE_API_TOKENS keep working beside keys
    assert events.status_code == 202
    conn = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
    try:
        stored = await conn.fetchrow("SELECT digest, prefix FROM api_keys WHERE name = 'checkout'")
        dump = await conn.fetchval("SELECT string_agg(t::text, '') FROM api_keys t")
    finally:
        await conn.close()
    assert bytes(stored["digest"]) == hashlib.sha256(secret.encode()).digest()
    assert secret not in dump and secret.startswith(stored["prefix"])


async def test_a_revoked_key_is_refused_within_seconds_and_the_change_is_audited(keyed):
    settings, store = keyed
    _, secret = await store.create("batch", [], None, actor="ana", host="laptop")
    async with running_app(settings) as (_, client):
        assert (
            await client.post("/v1/recommendations", json=BODY, headers=bearer(secret))
        ).status_code == 200
        await store.revoke("batch", actor="bo", host="ops-box")
        async with asyncio.timeout(20):  # under the 30 s poll, so only the NOTIFY path can pass
            while (
                await client.post("/v1/recommendations", json=BODY, headers=bearer(secret))
            ).status_code != 401:
                await asyncio.sleep(0.02)
    audit = await store.audit("batch")
    assert [(a.action, a.actor, a.host) for a in audit] == [
        ("create", "ana", "laptop"),
        ("revoke", "bo", "ops-box"),
    ]
    (listed,) = await store.list_keys(include_revoked=True)
    assert listed.revoked_by == "bo"
    assert listed.last_used_at is not None  # flushed at shutdown at the latest


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_a_metric(keyed):
    settings, store = keyed
    _, secret = await store.create("slow", [], "1/m", actor="ana", host="laptop")
    async with running_app(settings) as (_, client):
        first = await client.post("/v1/recommendations", json=BODY, headers=bearer(secret))
        second = await client.post("/v1/recommendations", json=BODY, headers=bearer(secret))
        on_events = await client.post(
            "/v1/events", json={"unit_id": "u1", "name": "click"}, headers=bearer(secret)
        )
        metrics = (await client.get("/metrics")).text
    assert first.status_code == 200
    assert second.status_code == 429 and on_events.status_code == 429
    assert 1 <= int(second.headers["retry-after"]) <= 60
    assert second.json()["type"] == "https://abgate.dev/problems/rate-limited"
    assert 'abgate_rate_limited_total{key="slow"} 2.0' in metrics


def test_keys_cli_creates_lists_revokes_and_audits(pg_dsn, schema, experiments_dir):
    runner = CliRunner()
    write_config(experiments_dir)
    env = {
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "ABGATE_EXPERIMENTS_DIR": str(experiments_dir),
        "USER": "tester",
        "COLUMNS": "200",
    }
    made = runner.invoke(
        cli_app,
        ["keys", "create", "web", "--surfaces", "home_top,cart_upsell", "--rate", "500/s"],
        env=env,
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("abg_") and len(secret) == 47
    listed = runner.invoke(cli_app, ["keys", "list"], env=env)
    assert "web" in listed.stdout and "cart_upsell, home_top" in listed.stdout
    assert secret not in listed.stdout
    again = runner.invoke(cli_app, ["keys", "create", "web"], env=env)
    assert again.exit_code == 1 and "exists" in again.output
    bad = runner.invoke(cli_app, ["keys", "create", "x", "--rate", "fast"], env=env)
    assert bad.exit_code == 1 and "500/s" in bad.output
    assert runner.invoke(cli_app, ["keys", "revoke", "web"], env=env).exit_code == 0
    assert runner.invoke(cli_app, ["keys", "revoke", "web"], env=env).exit_code == 1
    audit = runner.invoke(cli_app, ["keys", "audit"], env=env).stdout
    assert "create" in audit and "revoke" in audit and "tester" in audit


def test_keys_create_refuses_an_unknown_surface_with_exit_2(pg_dsn, schema, experiments_dir):
    runner = CliRunner()
    write_config(experiments_dir)
    env = {"ABGATE_POSTGRES_DSN": pg_dsn, "ABGATE_POSTGRES_SCHEMA": schema, "COLUMNS": "300"}
    args = ["keys", "create", "web", "--surfaces", "home_top,hom_top"]
    from_dir = runner.invoke(
        cli_app, args, env=env | {"ABGATE_EXPERIMENTS_DIR": str(experiments_dir)}
    )
    assert from_dir.exit_code == 2, from_dir.output
    assert "unknown surface 'hom_top'" in from_dir.stderr and "home_top" in from_dir.stderr
    # without a folder, the surfaces are the experiment store's: this schema has none yet
    from_store = runner.invoke(cli_app, args, env=env | {"ABGATE_EXPERIMENTS_DIR": None})
    assert from_store.exit_code == 2, from_store.output
    assert "unknown surfaces 'home_top', 'hom_top'" in from_store.stderr
    assert "experiment store" in from_store.stderr
    assert "web" not in runner.invoke(cli_app, ["keys", "list"], env=env).stdout  # nothing made
    applied = runner.invoke(
        cli_app, ["experiments", "apply", str(experiments_dir / "surfaces.yaml")], env=env
    )
    assert applied.exit_code == 0, applied.output
    made = runner.invoke(cli_app, ["keys", "create", "web", "--surfaces", "home_top"], env=env)
    assert made.exit_code == 0, made.output
