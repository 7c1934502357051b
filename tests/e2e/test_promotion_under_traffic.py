"""Promoting an alias that a running experiment uses, while traffic flows (issue 11).

A uvicorn gateway serves a running experiment whose control arm is ``models:/home_recs@champion``
and whose treatment is version 2; ``registry.promote`` moves ``champion`` to 2 in abgate and in a
real (sqlite) MLflow registry mid-traffic. The arms must keep their pinned versions (no exposure
with a changed model), while the surface defaults follow the alias.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from experiments.store import create_pool
from tests.e2e.helpers import serving, sqlite_registry
from tests.gateway.helpers import EXPERIMENT, load_demo_data, read_archive, settings_for

pytest.importorskip("mlflow")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

SURFACES = """\
surfaces:
  - {name: home_top, default_model: "models:/home_recs@champion", max_limit: 50}
  - {name: home_bottom, default_model: "models:/home_recs@champion"}
"""
FOLLOW_BOUND = 5.0  # seconds for the gateway to see the alias move (it polls every 0.05 s)


async def test_promotion_mid_experiment_keeps_arms_pinned_and_moves_the_defaults(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    from registry import promote

    await load_demo_data(pg_dsn, schema, units=50)
    (experiments_dir / "surfaces.yaml").write_text(SURFACES)
    (experiments_dir / "home-exp.yaml").write_text(EXPERIMENT)
    registry, client = await asyncio.to_thread(sqlite_registry, tmp_path)
    settings = settings_for(
        pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, alias_refresh=0.05
    )
    stop = asyncio.Event()
    served: list[tuple[str, str | None, str]] = []  # (surface, variant, version)
    sent_at: list[float] = []  # when each served request was sent (same order as served)

    async def traffic(http: httpx.AsyncClient) -> None:
        i = 0
        while not stop.is_set():
            surface = "home_top" if i % 4 else "home_bottom"
            sent = time.perf_counter()
            body = (
                await http.post(
                    "/v1/recommendations", json={"surface": surface, "unit_id": f"u{i % 50}"}
                )
            ).json()
            served.append((surface, body["variant"], body["model"]["version"]))
            sent_at.append(sent)
            i += 1

    pool = await create_pool(pg_dsn, schema)
    try:
        async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
            load = [asyncio.create_task(traffic(http)) for _ in range(4)]
            while len(served) < 200:  # traffic before the promotion
                await asyncio.sleep(0.01)
            before = len(served)
            await promote(pool, registry, "home_recs", "champion", "2")
            started = time.perf_counter()
            while True:  # until the gateway follows the alias (its own refresh, no nudge)
                listed = (await http.get("/v1/experiments")).json()
                bottom = next(s for s in listed["surfaces"] if s["name"] == "home_bottom")
                if bottom["resolved"] == "models:/home_recs/2":
                    break
                assert time.perf_counter() - started < FOLLOW_BOUND, "the alias move never arrived"
                await asyncio.sleep(0.02)
            followed = len(served)
            followed_at = time.perf_counter()
            while len(served) < followed + 200:  # traffic after the promotion
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.gather(*load)
            ready = (await http.get("/readyz")).json()
    finally:
        await pool.close()

    assert str(client.get_model_version_by_alias("home_recs", "champion").version) == "2"
    # The experiment's arms never moved: control stayed on the pinned 1, treatment on 2.
    arms = {(v, version) for s, v, version in served if s == "home_top"}
    assert arms == {("control", "1"), ("treatment", "2")}
    # Traffic outside the experiment followed the promotion: every request sent after the gateway
    # showed the new version (one sent before may still be in flight, answered from the old state).
    bottom = [
        version
        for (s, _, version), sent in zip(served, sent_at, strict=True)
        if s == "home_bottom" and sent > followed_at
    ]
    assert bottom and set(bottom) == {"2"}
    assert {version for s, _, version in served[:before] if s == "home_bottom"} == {"1"}
    assert ready["experiments"]["home-exp"]["arms"]["control"] == "models:/home_recs/1 (pinned)"
    exposures = [
        e["jsonPayload"]
        for e in read_archive(archive_dir)
        if e["jsonPayload"]["type"] == "exposure"
    ]
    assert len(exposures) == sum(1 for s, _, _ in served if s == "home_top")
    changed = [
        p
        for p in exposures
        if (p["variant"], p["model_version"]) not in {("control", "1"), ("treatment", "2")}
    ]
    assert changed == []  # zero exposures with a changed model
    assert len({p["phase"] for p in exposures}) == 1  # and no new allocation phase
