"""A weight ramp under traffic, then promotion on the evidence (issue 11's "done means").

Real Postgres (the experiment store: the ramp reaches the gateway by LISTEN/NOTIFY), Redis, a
uvicorn gateway and a sqlite MLflow registry. The experiment runs at 90/10, then is ramped to
50/50 while traffic flows. Early enrollers convert at 0.30 and late ones at 0.10, with a true
effect of +0.08 for treatment in both phases, so the arms mix early and late units in
different proportions: the pooled comparison is biased, the stratified one is not. Then
``abgate registry promote --experiment`` moves the alias on that evidence and writes its tags.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
from scipy import stats as st
from typer.testing import CliRunner

from abgate.cli import app
from analysis import build_report
from experiments import parse_experiment, parse_surfaces
from experiments.schema import SurfacesFile
from experiments.store import PostgresExperimentStore, create_pool
from tests.e2e.helpers import serving, sqlite_registry
from tests.gateway.helpers import SURFACES, load_demo_data, settings_for

pytest.importorskip("mlflow")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

EFFECT = 0.08
BASE = {"early": 0.30, "late": 0.10}
UNITS = 2000  # per phase
RELOAD_BOUND = 5.0


def experiment_yaml(control: int, treatment: int) -> str:
    return f"""\
key: home-exp
surface: home_top
variants:
  - {{key: control, weight: {control}, model: "models:/home_recs@champion"}}
  - {{key: treatment, weight: {treatment}, model: "models:/home_recs/2"}}
metrics:
  - {{name: conversion, kind: proportion, outcome: purchase, role: primary}}
"""


async def visit(
    http: httpx.AsyncClient, unit: str, cohort: str, seen: dict[str, tuple[str, str, bool]]
) -> None:
    """One request; the unit converts by its cohort's rate and the arm it was served."""
    body = (
        await http.post("/v1/recommendations", json={"surface": "home_top", "unit_id": unit})
    ).json()
    variant = body["variant"]
    if unit in seen:  # a returning unit: its outcome was decided at its first visit
        return
    rate = BASE[cohort] + (EFFECT if variant == "treatment" else 0.0)
    converted = random.Random(f"outcome:{unit}").random() < rate
    seen[unit] = (cohort, variant, converted)
    if converted:
        await http.post("/v1/events", json={"unit_id": unit, "name": "purchase", "value": 1.0})


async def traffic(http: httpx.AsyncClient, units: list[tuple[str, str]], seen: dict) -> None:  # type: ignore[type-arg]
    queue = list(units)

    async def worker() -> None:
        while queue:
            unit, cohort = queue.pop()
            await visit(http, unit, cohort, seen)

    await asyncio.gather(*(worker() for _ in range(16)))


async def test_a_ramp_under_traffic_is_reported_without_false_alarm_or_bias_then_promoted(
    pg_dsn, redis_url, schema, redis_prefix, archive_dir, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=50)
    pool = await create_pool(pg_dsn, schema)
    store = PostgresExperimentStore(pool)
    who = {"author": "test"}
    await store.apply_surfaces(SurfacesFile(surfaces=parse_surfaces(SURFACES)), **who)
    await store.apply(parse_experiment(experiment_yaml(90, 10)), **who)
    await store.start("home-exp", **who)
    settings = settings_for(pg_dsn, redis_url, schema, redis_prefix, None, archive_dir)
    seen: dict[str, tuple[str, str, bool]] = {}
    early = [(f"early-{i}", "early") for i in range(UNITS)]
    late = [(f"late-{i}", "late") for i in range(UNITS)]
    try:
        async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
            phase_before = (await http.get("/v1/experiments")).json()["experiments"][0]["phase"]
            await traffic(http, early, seen)
            revision = (await http.get("/readyz")).json()["config"]["revision"]
            await store.apply(parse_experiment(experiment_yaml(50, 50)), **who, reason="ramp")
            started = time.perf_counter()
            while (await http.get("/readyz")).json()["config"]["revision"] <= revision:
                assert time.perf_counter() - started < RELOAD_BOUND, "the ramp never arrived"
                await asyncio.sleep(0.01)
            phase_after = (await http.get("/v1/experiments")).json()["experiments"][0]["phase"]
            returning = random.Random(5).sample(early, UNITS // 5)  # they come back, ramped
            await traffic(http, late + returning, seen)
    finally:
        await pool.close()
    assert phase_before != phase_after

    report = build_report(parse_experiment(experiment_yaml(50, 50)), archive_dir)
    phases = {p.id: p for p in report.phases}
    assert set(phases) == {phase_before, phase_after}
    # SRM is not flagged in any phase, although the arms hold very different unit counts.
    assert all(p.srm_p_value_adjusted >= 0.001 for p in report.phases)
    assert report.variants["control"].units > 1.3 * report.variants["treatment"].units
    # Early control units of buckets [5000, 9000) moved to treatment at 50/50: excluded.
    assert phases[phase_before].excluded.get("control", 0) > 0.3 * UNITS
    conversion = report.metrics[0]
    (c,) = conversion.comparisons
    assert conversion.stratified
    assert c.diff_ci[0] < EFFECT < c.diff_ci[1]
    # The pooled comparison over the same kept units is biased (Simpson): it misses the truth.
    kept_early = {u for u, (cohort, v, _) in seen.items() if cohort == "early"} - {
        u for u, _ in returning if seen[u][1] == "control"
    }
    pooled = {
        v: [
            conv
            for u, (cohort, arm, conv) in seen.items()
            if arm == v and (cohort == "late" or u in kept_early)
        ]
        for v in ("control", "treatment")
    }
    welch = st.ttest_ind(pooled["treatment"], pooled["control"], equal_var=False)
    assert welch.confidence_interval(0.95).high < EFFECT
    assert report.verdict is not None and report.verdict.decision == "ship", report.verdict

    registry, client = await asyncio.to_thread(sqlite_registry, tmp_path)
    env = {
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
        "USER": "tester",
        "COLUMNS": "200",
    }
    args = ["registry", "promote", "home_recs", "champion", "2", "--experiment", "home-exp"]
    done = await asyncio.to_thread(
        CliRunner().invoke, app, [*args, "--archive", str(archive_dir)], env=env
    )
    assert done.exit_code == 0, done.output
    tags = client.get_model_version("home_recs", "2").tags
    assert tags["abgate.promotion.experiment"] == "home-exp"
    assert tags["abgate.promotion.decision"] == "ship"
    assert float(tags["abgate.promotion.lift"]) == pytest.approx(c.lift)
    assert str(client.get_model_version_by_alias("home_recs", "champion").version) == "2"
