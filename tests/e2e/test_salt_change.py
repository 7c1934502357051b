"""A salt change of a running experiment under traffic, reported from the gateway's archive.

Real Postgres (the experiment store: the change reaches the gateway by LISTEN/NOTIFY), Redis
and a uvicorn gateway writing its archive. The experiment runs at 90/10 under its key as salt;
the operator forces a new salt at 50/50 (refused without --force), which deals every unit
again; most units of the first run come back, with new ones. Every visit converts with
probability BASE, plus EFFECT in the arm served then. The report of the stored experiment
analyses the units enrolled under the new salt (Welch's test over them, recomputed here from
the answers the gateway gave) and says that it left the first run out; the report with the
first version's file counts the first run's units until the change. Read blind to the salt, the
first run's control units of buckets [5000, 9000) would be excluded for nothing, and returning
units counted in an arm they had left.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
from scipy import stats as st

from analysis import build_report
from experiments import parse_experiment, parse_surfaces
from experiments.errors import ReshuffleRefused
from experiments.schema import SurfacesFile
from experiments.store import PostgresExperimentStore, create_pool
from tests.e2e.helpers import serving
from tests.gateway.helpers import SURFACES, load_demo_data, settings_for

pytestmark = [pytest.mark.slow]

BASE, EFFECT = 0.25, 0.10
UNITS = 1500  # per run
RELOAD_BOUND = 5.0


def experiment_yaml(control: int, treatment: int, salt: str | None = None) -> str:
    return f"""\
key: home-exp
surface: home_top
{f"salt: {salt}" if salt else ""}
variants:
  - {{key: control, weight: {control}, model: "models:/home_recs@champion"}}
  - {{key: treatment, weight: {treatment}, model: "models:/home_recs/2"}}
metrics:
  - {{name: conversion, kind: proportion, outcome: purchase, role: primary}}
"""


Served = dict[tuple[str, int], tuple[str, bool]]  # (unit, run) -> (arm served, converted)


async def traffic(http: httpx.AsyncClient, units: list[str], run: int, served: Served) -> None:
    """Each unit visits once; it converts by the arm served, and reports the purchase."""
    queue = list(units)

    async def worker() -> None:
        while queue:
            unit = queue.pop()
            body = (
                await http.post(
                    "/v1/recommendations", json={"surface": "home_top", "unit_id": unit}
                )
            ).json()
            arm = body["variant"]
            rate = BASE + (EFFECT if arm == "treatment" else 0.0)
            converted = random.Random(f"{unit}:{run}").random() < rate
            served[unit, run] = (arm, converted)
            if converted:
                await http.post("/v1/events", json={"unit_id": unit, "name": "purchase"})

    await asyncio.gather(*(worker() for _ in range(16)))


async def reloaded(http: httpx.AsyncClient, revision: int) -> None:
    started = time.perf_counter()
    while (await http.get("/readyz")).json()["config"]["revision"] <= revision:
        assert time.perf_counter() - started < RELOAD_BOUND, "the change never arrived"
        await asyncio.sleep(0.01)


def welch(units: dict[str, tuple[str, bool]]) -> tuple[float, tuple[float, float]]:
    t = [c for a, c in units.values() if a == "treatment"]
    c = [c for a, c in units.values() if a == "control"]
    ci = st.ttest_ind(t, c, equal_var=False).confidence_interval(0.95)
    return sum(t) / len(t) - sum(c) / len(c), (float(ci.low), float(ci.high))


async def test_a_forced_salt_change_under_traffic_is_reported_per_salt_and_said(
    pg_dsn, redis_url, schema, redis_prefix, archive_dir
):
    await load_demo_data(pg_dsn, schema, units=50)
    pool = await create_pool(pg_dsn, schema)
    store = PostgresExperimentStore(pool)
    who = {"author": "test"}
    await store.apply_surfaces(SurfacesFile(surfaces=parse_surfaces(SURFACES)), **who)
    await store.apply(parse_experiment(experiment_yaml(90, 10)), **who)
    await store.start("home-exp", **who)
    first_file = (await store.get("home-exp")).experiment
    settings = settings_for(pg_dsn, redis_url, schema, redis_prefix, None, archive_dir)
    served: Served = {}
    run_1 = [f"a-{i}" for i in range(UNITS)]
    returning = random.Random(3).sample(run_1, int(0.8 * UNITS))
    new_salt = parse_experiment(experiment_yaml(50, 50, salt="home-exp-2"))
    try:
        async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
            phase_1 = (await http.get("/v1/experiments")).json()["experiments"][0]["phase"]
            await traffic(http, run_1, 1, served)
            with pytest.raises(ReshuffleRefused, match="salt changes from 'home-exp'"):
                await store.apply(new_salt, **who)
            revision = (await http.get("/readyz")).json()["config"]["revision"]
            changed = await store.apply(new_salt, **who, force=True, reason="re-deal")
            await reloaded(http, revision)
            phase_2 = (await http.get("/v1/experiments")).json()["experiments"][0]["phase"]
            await traffic(http, [f"b-{i}" for i in range(UNITS)] + returning, 2, served)
    finally:
        await pool.close()
    assert phase_1 != phase_2
    assert any("every unit is dealt again" in w for w in changed.warnings)
    # Of the returning units, about half now get the other arm: the salt really re-dealt them.
    switched = sum(served[u, 1][0] != served[u, 2][0] for u in returning)
    assert 0.3 * len(returning) < switched < 0.7 * len(returning)

    report = build_report(new_salt, archive_dir)
    run_2 = {u: s for (u, run), s in served.items() if run == 2}
    assert {a: v.units for a, v in report.variants.items()} == {
        a: sum(1 for arm, _ in run_2.values() if arm == a) for a in ("control", "treatment")
    }
    (phase,) = report.phases
    assert phase.id == phase_2 and phase.excluded == {}
    (c,) = report.metrics[0].comparisons
    diff, ci = welch(run_2)
    assert c.diff == pytest.approx(diff, rel=1e-9)
    assert c.diff_ci == pytest.approx(ci, rel=1e-9)
    assert c.diff_ci[0] < EFFECT < c.diff_ci[1]
    (warning,) = report.warnings
    assert "salt changed: one phase of this window was served under another salt" in warning
    assert f"{phase_1} (" in warning and f"{UNITS:,} units first exposed in it" in warning

    earlier = build_report(first_file, archive_dir)
    run_1_units = {u: s for (u, run), s in served.items() if run == 1}
    (phase,) = earlier.phases
    assert phase.id == phase_1 and phase.excluded == {}
    assert sum(v.units for v in earlier.variants.values()) == UNITS
    (c,) = earlier.metrics[0].comparisons
    diff, ci = welch(run_1_units)
    assert c.diff == pytest.approx(diff, rel=1e-9)
    assert c.diff_ci == pytest.approx(ci, rel=1e-9)
    assert f"phase {phase_1} until " in earlier.warnings[0]
