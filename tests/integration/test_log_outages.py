"""Log sink outages through the running app: the spool, the full-spool policy on /readyz and in
metrics, and the Cloud Logging sink during an API outage. Nothing served goes unlogged."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import orjson
import pytest

from tests.gateway.helpers import (
    load_demo_data,
    read_archive,
    running_app,
    settings_for,
    write_config,
)
from tests.gateway.test_cloud_logging import Endpoint, sink_at

HOME = {"surface": "home_top"}  # in the experiment: logs an exposure
CART = {"surface": "cart_upsell"}  # no experiment: nothing to log


@pytest.fixture
async def base(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir):
    await load_demo_data(pg_dsn, schema, units=40)
    write_config(experiments_dir)
    return pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir


async def test_a_full_spool_under_refuse_answers_503_for_experiment_traffic_only(base):
    archive_dir = base[-1]
    settings = settings_for(
        *base,
        log_flush_interval=3600,  # the test flushes
        spool_full="refuse",
        spool_max_mb=0.01,  # ~10 KB: a dozen exposures
    )
    archive_dir.write_text("in the way")  # the archive cannot be written
    async with running_app(settings) as (app, client):
        gw = app.state.abgate.gateway
        (logger,) = gw.logger.loggers
        served = []
        for i in range(30):
            r = await client.post("/v1/recommendations", json={**HOME, "unit_id": f"u{i}"})
            assert r.status_code == 200
            served.append(r.json()["request_id"])
        assert not await logger.flush()  # fails; the spool takes what fits, then is full
        refused = await client.post("/v1/recommendations", json={**HOME, "unit_id": "u1"})
        other = await client.post("/v1/recommendations", json={**CART, "unit_id": "u1"})
        event = await client.post("/v1/events", json={"unit_id": "u1", "name": "purchase"})
        ready = (await client.get("/readyz")).json()
        metrics = (await client.get("/metrics")).text
        archive_dir.unlink()  # the disk is back
        assert await logger.flush()
        again = await client.post("/v1/recommendations", json={**HOME, "unit_id": "u2"})
        served.append(again.json()["request_id"])
        assert (await client.get("/readyz")).json()["checks"]["log"] == "ok"
    assert refused.status_code == 503
    assert refused.json()["type"].endswith("/logging-unavailable")
    assert other.status_code == 200  # no exposure to log: served
    assert event.status_code == 503
    answer = event.json()
    assert (answer["accepted"], answer["dropped"]) == (0, 1)
    assert answer["results"][0]["status"] == "dropped" and answer["results"][0]["event_id"]
    assert ready["status"] == "degraded"
    assert "spool full, refusing experiment traffic" in ready["checks"]["log"]
    assert 'abgate_log_spool_full{sink="archive"} 1.0' in metrics
    assert "abgate_log_refused_total 2.0" in metrics
    assert again.status_code == 200
    logged = [e["jsonPayload"]["request_id"] for e in read_archive(archive_dir)]
    assert logged == served  # every answer given is logged, once, in order


@pytest.fixture
def api() -> Iterator[Endpoint]:
    """A local stand-in for Cloud Logging's entries:write (tests/gateway/test_cloud_logging.py)."""
    ep = Endpoint()
    thread = threading.Thread(target=ep.server.serve_forever, daemon=True)
    thread.start()
    yield ep
    ep.server.shutdown()
    ep.server.server_close()


async def test_the_cloud_logging_sink_spools_through_an_api_outage(base, api: Endpoint):
    endpoint = api
    settings = settings_for(*base, log_flush_interval=3600)
    endpoint.statuses = [503, 503]  # one per failed flush below
    async with running_app(settings, sink=sink_at(endpoint)) as (app, client):
        (logger,) = app.state.abgate.gateway.logger.loggers
        served = []
        for i in range(10):
            r = await client.post("/v1/recommendations", json={**HOME, "unit_id": f"u{i}"})
            served.append(r.json()["request_id"])
            if i % 4 == 3:
                assert not await logger.flush()  # the API is down: spilled to the spool
        assert logger.spooled == 8 and len(logger) == 2
        assert await logger.flush()  # the API is back: the spool, then the queue
    delivered = [
        e["jsonPayload"]["request_id"]
        for _, _, body in endpoint.requests[2:]  # the requests answered 200
        for e in orjson.loads(body)["entries"]
    ]
    assert delivered == served
