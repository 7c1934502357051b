"""An experiment's whole life, driven through the store and observed through real HTTP.

A uvicorn server runs the gateway on a free port against the Postgres experiment store; each
lifecycle step is applied through ``PostgresExperimentStore`` and must reach the running
gateway (LISTEN/NOTIFY) before the next one: assignments, exposures and ``history`` follow.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from experiments import parse_experiment, parse_surfaces
from experiments.schema import SurfacesFile
from experiments.store import PostgresExperimentStore, create_pool
from tests.e2e.helpers import serving
from tests.gateway.helpers import SURFACES, load_demo_data, read_archive, settings_for

pytestmark = pytest.mark.slow

UNITS = [f"u{i}" for i in range(50)] + [f"visitor-{i}" for i in range(150)]
RELOAD_BOUND = 2.0  # seconds; the design goal is 1 s, measured delays are printed


def experiment_yaml(traffic: float, control: int, treatment: int) -> str:
    return f"""\
key: home-exp
surface: home_top
traffic: {traffic}
variants:
  - {{key: control, weight: {control}, model: "models:/home_recs@champion"}}
  - {{key: treatment, weight: {treatment}, model: "models:/home_recs/2"}}
"""


async def assignments(client: httpx.AsyncClient) -> dict[str, tuple[str | None, str]]:
    out = {}
    for unit in UNITS:
        body = (
            await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": unit})
        ).json()
        out[unit] = (body["variant"], body["model"]["version"])
    return out


async def wait_for_revision(client: httpx.AsyncClient, after: int, delays: list[float]) -> int:
    started = time.perf_counter()
    while time.perf_counter() - started < RELOAD_BOUND:
        revision = (await client.get("/readyz")).json()["config"]["revision"]
        if revision > after:
            delays.append(time.perf_counter() - started)
            return int(revision)
        await asyncio.sleep(0.005)
    raise AssertionError(f"the gateway did not see revision > {after} within {RELOAD_BOUND} s")


async def test_apply_start_ramp_pause_resume_stop_reach_the_gateway(
    pg_dsn, redis_url, schema, redis_prefix, tmp_path, archive_dir
):
    await load_demo_data(pg_dsn, schema, units=50)
    pool = await create_pool(pg_dsn, schema)
    store = PostgresExperimentStore(pool)
    who = {"author": "test"}
    await store.apply_surfaces(SurfacesFile(surfaces=parse_surfaces(SURFACES)), **who)
    await store.apply(parse_experiment(experiment_yaml(0.2, 90, 10)), **who, reason="draft")
    # No experiments folder: the gateway reads the Postgres experiment store.
    settings = settings_for(pg_dsn, redis_url, schema, redis_prefix, None, archive_dir)
    delays: list[float] = []
    try:
        async with serving(settings) as url, httpx.AsyncClient(base_url=url) as client:
            revision = (await client.get("/readyz")).json()["config"]["revision"]

            draft = await assignments(client)
            assert {v for v, _ in draft.values()} == {None}  # a draft takes no traffic

            await store.start("home-exp", **who, reason="go")
            revision = await wait_for_revision(client, revision, delays)
            at20 = await assignments(client)
            inside20 = {u for u, (v, _) in at20.items() if v is not None}
            assert 0 < len(inside20) < len(UNITS) * 0.4
            for variant, version in at20.values():
                assert version == ("2" if variant == "treatment" else "1")

            await store.apply(
                parse_experiment(experiment_yaml(0.5, 90, 10)), **who, reason="ramp traffic"
            )
            revision = await wait_for_revision(client, revision, delays)
            at50 = await assignments(client)
            assert all(at50[u] == at20[u] for u in inside20), "raising traffic moved a unit"
            assert len({u for u, (v, _) in at50.items() if v is not None}) > len(inside20)

            await store.apply(
                parse_experiment(experiment_yaml(0.5, 50, 50)), **who, reason="ramp weights"
            )
            revision = await wait_for_revision(client, revision, delays)
            ramped = await assignments(client)
            was_treatment = [u for u, (v, _) in at50.items() if v == "treatment"]
            assert was_treatment and all(ramped[u][0] == "treatment" for u in was_treatment)

            await store.pause("home-exp", **who)
            revision = await wait_for_revision(client, revision, delays)
            exposures_before = len(read_archive(archive_dir))
            paused = await assignments(client)
            assert {v for v, _ in paused.values()} == {None}

            await store.resume("home-exp", **who)
            revision = await wait_for_revision(client, revision, delays)
            assert await assignments(client) == ramped  # units get their variant back

            await store.stop("home-exp", **who, winner="treatment", reason="treatment won")
            revision = await wait_for_revision(client, revision, delays)
            stopped = await assignments(client)
            assert set(stopped.values()) == {(None, "2")}  # the winner's model for everyone
            await client.get("/healthz")
        entries = read_archive(archive_dir)
        exposures = [e["jsonPayload"] for e in entries if e["jsonPayload"]["type"] == "exposure"]
        # No exposures while paused or after stop: only draft(0) + 20% + 50% + ramp + resume rounds.
        in_rounds = (
            len(inside20)
            + 2 * sum(1 for v, _ in at50.values() if v)
            + sum(1 for v, _ in ramped.values() if v)
        )
        assert len(exposures) == in_rounds
        assert exposures_before <= len(exposures)
        assert {p["config_version"] for p in exposures} >= {2, 3, 4}
        history = await store.history("home-exp")
        assert [h.action for h in history] == [
            "create",
            "start",
            "apply",
            "apply",
            "pause",
            "resume",
            "stop",
        ]
        assert history[-1].reason == "treatment won" and history[-1].author == "test"
    finally:
        await pool.close()
    print(f"reload delays (s): {[round(d, 3) for d in delays]}")
    assert max(delays) < RELOAD_BOUND
