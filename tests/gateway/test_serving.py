"""The serving path through real HTTP semantics (ASGI) against real Postgres and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from batch import set_alias
from experiments import assign, bucket
from experiments.store import create_pool
from tests.gateway.helpers import (
    SURFACES,
    read_archive,
    running_app,
    write_config,
)


def expected_variant(unit: str) -> str:
    return assign("home-exp", unit, ["control", "treatment"], [50, 50])


async def test_first_request_reads_postgres_then_redis_serves(gateway_settings):
    async with running_app(gateway_settings) as (app, client):
        first = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u1", "limit": 5}
        )
        await app.state.abgate.gateway.results.drain()  # the Redis fill runs after the answer
        second = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u1", "limit": 5}
        )
    assert first.status_code == 200, first.text
    assert first.json()["source"] == "db"
    assert second.json()["source"] == "cache"
    assert first.json()["items"] == second.json()["items"]
    assert len(first.json()["items"]) == 5


async def test_unit_is_served_its_variants_model_version(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        for i in range(20):
            unit = f"u{i}"
            body = (
                await client.post(
                    "/v1/recommendations", json={"surface": "home_top", "unit_id": unit}
                )
            ).json()
            variant = expected_variant(unit)
            assert body["experiment"] == "home-exp"
            assert body["variant"] == variant
            version = "1" if variant == "control" else "2"
            assert body["model"] == {"name": "home_recs", "version": version}
            assert body["items"][0]["id"] == f"home_recs-v{version}-u{i}-0"


async def test_exclusions_are_removed_and_the_list_back_filled(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        plain = (
            await client.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": "u3", "limit": 10}
            )
        ).json()
        ids = [it["id"] for it in plain["items"]]
        excluded = [ids[0], ids[4], "not-in-list"]
        body = (
            await client.post(
                "/v1/recommendations",
                json={"surface": "home_top", "unit_id": "u3", "limit": 10, "exclude": excluded},
            )
        ).json()
    got = [it["id"] for it in body["items"]]
    assert len(got) == 10
    assert not set(got) & set(excluded)
    prefix = ids[0].rsplit("-", 1)[0]
    assert got == [f"{prefix}-{i}" for i in (1, 2, 3, 5, 6, 7, 8, 9, 10, 11)]


async def test_unknown_unit_gets_the_versions_default_list(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        body = (
            await client.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": "nobody"}
            )
        ).json()
    version = "1" if expected_variant("nobody") == "control" else "2"
    assert body["source"] == "fallback"
    assert body["items"][0]["id"] == f"home_recs-v{version}-default-0"


async def test_surface_without_experiment_serves_default_model_and_logs_no_exposure(
    gateway_settings, archive_dir
):
    async with running_app(gateway_settings) as (_, client):
        body = (
            await client.post(
                "/v1/recommendations", json={"surface": "cart_upsell", "unit_id": "u2"}
            )
        ).json()
    assert body["experiment"] is None and body["variant"] is None
    assert body["model"] == {"name": "cart_recs", "version": "1"}
    assert read_archive(archive_dir) == []


async def test_fallback_chain_reaches_the_fallback_variants_default(
    pg_dsn, schema, gateway_settings, experiments_dir
):
    # Treatment points at a version that does not exist: its units fall back to control's default.
    write_config(
        experiments_dir,
        (experiments_dir / "home-exp.yaml")
        .read_text()
        .replace("models:/home_recs/2", "models:/home_recs/99"),
    )
    async with running_app(gateway_settings) as (_, client):
        unit = next(f"x{i}" for i in range(100) if expected_variant(f"x{i}") == "treatment")
        body = (
            await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": unit})
        ).json()
    assert body["variant"] == "treatment"
    assert body["source"] == "fallback"
    assert body["model"] == {"name": "home_recs", "version": "1"}
    assert body["items"][0]["id"] == "home_recs-v1-default-0"


async def test_alias_change_switches_version_and_never_serves_the_old_cache(
    pg_dsn, schema, gateway_settings, experiments_dir
):
    (experiments_dir / "home-exp.yaml").unlink()  # no experiment: home_top serves the alias
    settings = gateway_settings.model_copy(update={"alias_refresh": 0.05})
    async with running_app(settings) as (app, client):
        before = (
            await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": "u1"})
        ).json()
        assert before["model"]["version"] == "1"
        pool = await create_pool(pg_dsn, schema)
        try:
            await set_alias(pool, "home_recs", "champion", "2")
        finally:
            await pool.close()
        await app.state.abgate.gateway.refresh_models()
        after = (
            await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": "u1"})
        ).json()
    assert after["model"]["version"] == "2"
    assert after["source"] == "db"  # a new cache key: the v1 entry cannot be served
    assert after["items"][0]["id"].startswith("home_recs-v2-")


async def test_alias_move_leaves_a_running_experiments_arms_on_their_pinned_versions(
    pg_dsn, schema, gateway_settings, archive_dir
):
    control = next(f"u{i}" for i in range(50) if expected_variant(f"u{i}") == "control")
    async with running_app(gateway_settings) as (app, client):
        listed = (await client.get("/v1/experiments")).json()["experiments"][0]
        assert listed["variants"][0]["pinned"] == "1"
        phase = listed["phase"]
        before = (
            await client.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": control}
            )
        ).json()
        pool = await create_pool(pg_dsn, schema)
        try:
            await set_alias(pool, "home_recs", "champion", "2")  # promotion mid-experiment
        finally:
            await pool.close()
        await app.state.abgate.gateway.refresh_models()
        after = (
            await client.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": control}
            )
        ).json()
        listed_after = (await client.get("/v1/experiments")).json()
        ready = (await client.get("/readyz")).json()
    assert before["model"]["version"] == after["model"]["version"] == "1"
    assert after["variant"] == "control"
    exp = listed_after["experiments"][0]
    assert exp["phase"] == phase  # the served versions did not change: same allocation
    assert exp["variants"][0]["resolved"] == "models:/home_recs/1"
    surface = next(s for s in listed_after["surfaces"] if s["name"] == "home_top")
    assert surface["resolved"] == "models:/home_recs/2"  # the default follows the alias
    assert ready["experiments"]["home-exp"]["arms"]["control"] == "models:/home_recs/1 (pinned)"
    payloads = [e["jsonPayload"] for e in read_archive(archive_dir)]
    exposures = [p for p in payloads if p["type"] == "exposure"]
    assert len(exposures) == 2
    assert {p["model_version"] for p in exposures} == {"1"}
    assert {p["phase"] for p in exposures} == {phase}


async def test_exposures_and_outcomes_reach_the_archive_in_the_export_format(
    gateway_settings, archive_dir
):
    async with running_app(gateway_settings) as (_, client):
        r = await client.post(
            "/v1/recommendations",
            json={"surface": "home_top", "unit_id": "u7", "limit": 3},
            headers={"x-request-id": "req-42"},
        )
        e = await client.post(
            "/v1/events",
            json=[
                {
                    "unit_id": "u7",
                    "name": "purchase",
                    "value": 12.5,
                    "item_id": "sku-1",
                    "ts": "2026-11-26T18:05:02Z",
                },
                {"unit_id": "u7", "name": "click"},
            ],
        )
    assert e.status_code == 202
    assert {k: v for k, v in e.json().items() if k != "results"} == {
        "accepted": 2,
        "rejected": 0,
        "dropped": 0,
    }
    assert [x["status"] for x in e.json()["results"]] == ["accepted", "accepted"]
    entries = read_archive(archive_dir)
    assert len(entries) == 3
    exposure = next(x for x in entries if x["jsonPayload"]["type"] == "exposure")
    payload = exposure["jsonPayload"]
    assert list(exposure) == [
        "logName",
        "insertId",
        "timestamp",
        "severity",
        "resource",
        "jsonPayload",
    ]
    assert exposure["logName"] == "projects/local/logs/abgate-events"
    assert exposure["insertId"] == payload["event_id"]
    assert exposure["timestamp"] == payload["ts"]
    assert exposure["resource"] == {"type": "generic_task", "labels": {}}
    assert list(payload) == [
        "type",
        "event_id",
        "ts",
        "experiment",
        "variant",
        "unit_id",
        "surface",
        "model",
        "model_version",
        "items",
        "config_version",
        "source",
        "request_id",
        "phase",
        "weights",
        "bucket",
    ]
    assert payload["request_id"] == "req-42"
    assert payload["items"] == [it["id"] for it in r.json()["items"]]
    assert payload["variant"] == expected_variant("u7")
    assert payload["bucket"] == bucket("home-exp", "u7")
    assert payload["weights"] == [
        {"variant": "control", "weight": 50, "lo": 0, "hi": 5000},
        {"variant": "treatment", "weight": 50, "lo": 5000, "hi": 10_000},
    ]
    assert len(payload["phase"]) == 12
    purchase = next(x["jsonPayload"] for x in entries if x["jsonPayload"].get("name") == "purchase")
    assert purchase == {
        "type": "outcome",
        "event_id": purchase["event_id"],
        "ts": "2026-11-26T18:05:02.000000Z",
        "unit_id": "u7",
        "name": "purchase",
        "value": 12.5,
        "item_id": "sku-1",
    }
    # The file of the outcome's hour, in the export's naming scheme.
    assert (archive_dir / "abgate-events/2026/11/26/18:00:00_18:59:59_S0.json").exists()


async def test_redis_keys_carry_model_and_version(gateway_settings, redis_url, redis_prefix):
    async with running_app(gateway_settings) as (_, client):
        await client.post("/v1/recommendations", json={"surface": "cart_upsell", "unit_id": "u4"})
    r = aioredis.from_url(redis_url)
    try:
        keys = [k.decode() async for k in r.scan_iter(match=redis_prefix + "*")]
    finally:
        await r.aclose()
    assert keys == [f"{redis_prefix}r:cart_recs:1:u4"]


async def test_in_process_cache_serves_repeat_units(gateway_settings):
    settings = gateway_settings.model_copy(update={"local_cache_size": 100})
    async with running_app(settings) as (app, client):
        await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": "u9"})
        body = (
            await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": "u9"})
        ).json()
        assert len(app.state.abgate.gateway.results.local) == 1
    assert body["source"] == "cache"


async def test_health_ready_metrics_and_openapi(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = (await client.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert ready["checks"] == {"postgres": "ok", "redis": "ok", "log": "ok"}
        await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": "u1"})
        metrics = (await client.get("/metrics")).text
        assert 'abgate_served_total{source="db",surface="home_top"} 1.0' in metrics
        await client.post("/v1/recommendations", json={"surface": "home_top"})
        metrics = (await client.get("/metrics")).text
        assert 'abgate_requests_total{endpoint="recommendations",status="200"} 1.0' in metrics
        assert 'abgate_requests_total{endpoint="recommendations",status="400"} 1.0' in metrics
        assert 'abgate_request_seconds_count{endpoint="recommendations"} 2.0' in metrics
        spec = (await client.get("/openapi.json")).json()
        assert "/v1/recommendations" in spec["paths"]
        listing = (await client.get("/v1/experiments")).json()
        assert listing["experiments"][0]["key"] == "home-exp"
        assert listing["experiments"][0]["variants"][0]["resolved"] == "models:/home_recs/1"


async def test_one_process_exports_its_own_process_metrics_and_queue(gateway_settings):
    settings = gateway_settings.model_copy(update={"log_flush_interval": 600})
    async with running_app(settings) as (_, client):
        for unit in ("u1", "u2", "u3"):
            await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": unit})
        metrics = (await client.get("/metrics")).text
    samples = {
        s.name: s for family in text_string_to_metric_families(metrics) for s in family.samples
    }
    assert samples["abgate_log_queue_records"].value == 3  # the exposures not yet written
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert samples[name].labels == {}  # this process, no pid label (that is --workers)
    assert samples["process_start_time_seconds"].value > 0
    assert "abgate_requests_created" in samples  # single-process exposition, unchanged


async def test_bearer_tokens_are_enforced_when_configured(gateway_settings):
    settings = gateway_settings.model_copy(update={"api_tokens": "s3cret, other"})
    body = {"surface": "home_top", "unit_id": "u1"}
    async with running_app(settings) as (_, client):
        missing = await client.post("/v1/recommendations", json=body)
        wrong = await client.post(
            "/v1/recommendations", json=body, headers={"authorization": "Bearer nope"}
        )
        ok = await client.post(
            "/v1/recommendations", json=body, headers={"authorization": "Bearer other"}
        )
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert wrong.status_code == 401
    assert ok.status_code == 200


def test_invalid_experiment_folder_refuses_to_start(gateway_settings, experiments_dir: Path):
    (experiments_dir / "broken.yaml").write_text(
        "key: b\nsurface: home_top\nvariants:\n  - {key: a, weight: 1, model: nope}\n"
    )
    from experiments import ConfigError
    from gateway import create_app

    app = create_app(gateway_settings)

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    import asyncio

    with pytest.raises(ConfigError) as info:
        asyncio.run(start())
    text = str(info.value)
    assert "broken.yaml:4" in text and "variants[0].model" in text


async def test_every_answer_carries_the_request_id(gateway_settings):
    async with running_app(gateway_settings) as (_, client):
        given = {"x-request-id": "trace-9"}
        bad = await client.post("/v1/recommendations", json={"surface": "nowhere"}, headers=given)
        event = await client.post(
            "/v1/events", json={"unit_id": "u1", "name": "click"}, headers=given
        )
        bad_event = await client.post("/v1/events", content=b"{", headers=given)
        missing = await client.get("/v2/nothing", headers=given)
        made = await client.post("/v1/recommendations", json={})
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "trace-9"
    assert event.status_code == 202 and event.headers["x-request-id"] == "trace-9"
    assert bad_event.status_code == 400 and bad_event.headers["x-request-id"] == "trace-9"
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "trace-9"
    assert made.status_code == 400 and len(made.headers["x-request-id"]) == 32


async def test_holdout_units_are_logged_as_the_experiments_holdout_with_declared_attributes(
    gateway_settings, experiments_dir, archive_dir
):
    (experiments_dir / "surfaces.yaml").write_text(
        SURFACES.replace(
            "max_limit: 50}", "max_limit: 50, holdout: 0.3, log_attributes: [platform]}"
        )
    )
    attributes = {"platform": "ios", "email": "a@b.c"}
    async with running_app(gateway_settings) as (_, client):
        answers = [
            (
                await client.post(
                    "/v1/recommendations",
                    json={"surface": "home_top", "unit_id": f"u{i}", "attributes": attributes},
                )
            ).json()
            for i in range(50)
        ]
    exposures = {
        e["jsonPayload"]["unit_id"]: e["jsonPayload"]
        for e in read_archive(archive_dir)
        if e["jsonPayload"]["type"] == "exposure"
    }
    assert len(exposures) == 50  # held out or not, every unit of the experiment is logged
    held = [a for a in answers if exposures[a["unit_id"]].get("holdout")]
    assert 5 <= len(held) <= 25
    for a in held:
        payload = exposures[a["unit_id"]]
        assert (a["experiment"], a["variant"]) == (None, None)  # the caller sees no experiment
        assert a["model"] == {"name": "home_recs", "version": "1"}  # the surface default
        assert (payload["experiment"], payload["variant"]) == ("home-exp", "__holdout__")
        assert payload["model_version"] == "1"
    for payload in exposures.values():
        assert payload["attributes"] == {"platform": "ios"}  # only what the surface declares
