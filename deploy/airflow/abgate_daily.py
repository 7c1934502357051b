"""abgate's daily batch cycle as an Airflow DAG (Cloud Composer's engine).

    resolve → predict (staged) → validate → activate → warm → registry sync

- ``resolve`` pins the MLflow version behind ``model_uri`` (e.g. ``models:/home_recs@champion``)
  once, so every later task works on that version even if the alias moves meanwhile.
- ``predict`` scores the features with that version and loads the lists **staged**
  (``abgate batch predict --no-activate``: the predict command is the load; nothing serves yet).
- ``validate`` is the gate: row counts (units, a default list), coverage against the version
  the serving alias points at today ("yesterday's"), and lineage (input hash, results hash,
  inference run, the MLflow version that scored the lists). A failure stops the run before anything serves.
- ``activate`` attaches the staged load; no alias moves, so no traffic reaches it yet.
- ``warm`` copies its lists into Redis (the gateway's keys carry the version: warming an
  inactive version is refused, hence activate first).
- ``sync`` copies MLflow's aliases into abgate: only now does the alias, and traffic, move to
  the new version, whose lists are already in Redis.

Re-running a day is safe: a version already active is neither predicted nor activated again
(a model version is immutable), warming rewrites the same keys, sync moves nothing twice. A
run that failed after predict leaves a staged load, which the next run validates again.
Failures are retried (``ABGATE_DAG_RETRIES``, default 2) and then reported by
``on_failure_callback``: an ERROR log line and, with ``ABGATE_ALERT_WEBHOOK`` set, a JSON POST
(a Slack/Chat incoming webhook, or any HTTP endpoint).

The tasks run the ``abgate`` command named by ``ABGATE_COMMAND`` (default ``abgate``, e.g. the
``abgate[batch,mlflow,gcp]`` package installed in the Composer environment) with the worker's
environment: ``ABGATE_POSTGRES_DSN``, ``ABGATE_POSTGRES_SCHEMA``, ``ABGATE_REDIS_URL``,
``ABGATE_REDIS_PREFIX``, ``MLFLOW_TRACKING_URI`` (docs/operators.md, "Deploy on Google Cloud").
Tested with ``dag.test()`` against real Postgres and Redis (tests/deploy/test_airflow_dag.py).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from typing import Any

from abgate_tasks import AbgateCommandFailed, abgate, alert

try:  # Airflow 3 (Composer 3)
    from airflow.sdk import Param, dag, get_current_context, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]
    from airflow.operators.python import get_current_context  # type: ignore[no-redef]

log = logging.getLogger("abgate.dag")

# Keys of a load's lineage that must be present before it may serve (batch/lineage.py).
LINEAGE_KEYS = ("input_hash", "results_sha256", "predict_run_id", "source", "mlflow")


def versions(model: str) -> list[dict[str, Any]]:
    """``abgate batch versions MODEL --json``: one dict per loaded version."""
    return [json.loads(line) for line in abgate("batch", "versions", model, "--json").splitlines()]


def loads_of(mv: dict[str, str]) -> list[dict[str, Any]]:
    """The loads (active, staged, retired) of one model version."""
    return [r for r in versions(mv["model"]) if r["version"] == mv["version"]]


def check_load(
    candidate: dict[str, Any],
    serving: dict[str, Any] | None,
    *,
    min_units: int,
    min_coverage: float,
) -> list[str]:
    """What is wrong with ``candidate`` (a ``batch versions --json`` record) before it may
    serve, compared with the ``serving`` one; empty when it may. Pure: tested on its own."""
    problems = []
    meta = candidate.get("metadata") or {}
    if candidate["units"] < min_units:
        problems.append(f"{candidate['units']} units, fewer than min_units={min_units}")
    if not candidate.get("default_items"):
        problems.append("no default list (__default__ unit)")
    if serving is not None and serving["version"] != candidate["version"] and serving["units"]:
        coverage = candidate["units"] / serving["units"]
        if coverage < min_coverage:
            problems.append(
                f"coverage {coverage:.1%} of the {serving['units']} units of serving version "
                f"{serving['version']}, below min_coverage={min_coverage:.0%}"
            )
    missing = [k for k in LINEAGE_KEYS if not meta.get(k)]
    if missing:
        problems.append(f"lineage incomplete: no {', '.join(missing)}")
    scored_by = meta.get("mlflow") or {}
    if scored_by and (scored_by.get("name"), scored_by.get("version")) != (
        candidate["model"],
        candidate["version"],
    ):
        problems.append(
            f"scored by models:/{scored_by.get('name')}/{scored_by.get('version')}, not by "
            f"models:/{candidate['model']}/{candidate['version']}"
        )
    return problems


@dag(
    dag_id="abgate_daily",
    schedule=os.environ.get("ABGATE_DAG_SCHEDULE", "0 3 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two loads of one model never race (the loader also locks)
    default_args={
        "retries": int(os.environ.get("ABGATE_DAG_RETRIES", "2")),
        "retry_delay": timedelta(minutes=5),
        "on_failure_callback": alert,
    },
    params={
        "model_uri": Param("models:/home_recs@champion", type="string"),
        "features": Param("gs://BUCKET/features/home_recs/latest.parquet", type="string"),
        "top_k": Param(100, type="integer", minimum=1),
        "alias": Param("champion", type="string"),
        "min_units": Param(1, type="integer", minimum=0),
        "min_coverage": Param(0.95, type="number", minimum=0, maximum=1),
    },
    tags=["abgate"],
    doc_md=__doc__,
)
def abgate_daily() -> None:
    """The daily cycle (module docstring)."""

    @task
    def resolve() -> dict[str, str]:
        params = get_current_context()["params"]
        first = abgate("registry", "resolve", params["model_uri"]).split("\t", 1)[0].strip()
        name, _, version = first.removeprefix("models:/").rpartition("/")
        if not name or not version:
            raise AbgateCommandFailed(f"cannot read a version from {first!r}")
        return {"model": name, "version": version, "uri": f"models:/{name}/{version}"}

    @task
    def predict(mv: dict[str, str]) -> dict[str, str]:
        params = get_current_context()["params"]
        if any(r["status"] == "active" for r in loads_of(mv)):
            # A model version is immutable: once its lists serve, this day's work is done.
            log.info("%s is already active: nothing to predict", mv["uri"])
            return mv
        abgate("batch", "predict", "--model", mv["uri"], "--input", params["features"],
               "--top-k", str(params["top_k"]), "--no-activate")  # fmt: skip
        return mv

    @task
    def validate(mv: dict[str, str]) -> dict[str, str]:
        params = get_current_context()["params"]
        rows = versions(mv["model"])
        mine = [r for r in rows if r["version"] == mv["version"]]
        if not mine:
            raise ValueError(f"{mv['uri']} is not loaded")
        # The newest staged load (what activate would attach), else the active one (a re-run).
        staged = [r for r in mine if r["status"] == "staged"]
        candidate = (
            max(staged, key=lambda r: r["metadata"].get("load_id", 0)) if staged else mine[0]
        )
        serving = next((r for r in rows if params["alias"] in r["aliases"]), None)
        problems = check_load(
            candidate,
            serving,
            min_units=params["min_units"],
            min_coverage=params["min_coverage"],
        )
        if problems:
            raise ValueError(f"{mv['uri']} may not serve: " + "; ".join(problems))
        return mv

    @task
    def activate(mv: dict[str, str]) -> dict[str, str]:
        if not any(r["status"] == "active" for r in loads_of(mv)):  # a re-run: nothing to do
            abgate("batch", "activate", mv["model"], mv["version"])
        return mv

    @task
    def warm(mv: dict[str, str]) -> dict[str, str]:
        abgate("batch", "warm", "--model", mv["model"], "--version", mv["version"])
        return mv

    @task
    def sync(mv: dict[str, str]) -> None:
        abgate("registry", "sync", mv["model"])

    sync(warm(activate(validate(predict(resolve())))))


dag_object = abgate_daily()

if __name__ == "__main__":
    dag_object.test()
