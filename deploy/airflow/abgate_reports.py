"""Daily experiment reports: the report notebook executed with papermill, per running experiment.

    running (of the listed experiments, or of all) → report[key] for each

``running`` keeps the listed experiments whose stored status is ``running`` or, when the
``experiments`` parameter is empty (the default), every running experiment in the store
(``abgate experiments list --json``, the Postgres experiment store); each ``report`` executes
analysis/notebooks/experiment_report.ipynb with papermill for one of them and keeps the executed
notebook, ``report.json`` and the plots in ``REPORTS_DIR/YYYY-MM-DD/KEY/`` (on Composer,
``/home/airflow/gcs/data/…`` is the environment's bucket). The notebook runs ``abgate report``
itself, so its figures are the JSON report's.

Settings (worker environment): ``ABGATE_PAPERMILL_COMMAND`` (default ``papermill``, from the
``reports`` extra), ``ABGATE_REPORT_NOTEBOOK`` (default: the notebook beside this file, else the
repository's), ``ABGATE_REPORTS_DIR``, plus the ``ABGATE_*`` settings of ``abgate report``.
Tested with ``dag.test()`` (tests/deploy/test_airflow_dag.py).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from abgate_tasks import AbgateCommandFailed, abgate, alert, log

try:  # Airflow 3 (Composer 3)
    from airflow.sdk import Param, dag, get_current_context, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]
    from airflow.operators.python import get_current_context  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent


def notebook() -> Path:
    """The report notebook: ABGATE_REPORT_NOTEBOOK, beside this file, or the repository's."""
    if os.environ.get("ABGATE_REPORT_NOTEBOOK"):
        return Path(os.environ["ABGATE_REPORT_NOTEBOOK"])
    beside = HERE / "experiment_report.ipynb"
    return (
        beside
        if beside.exists()
        else HERE.parents[1] / "analysis/notebooks/experiment_report.ipynb"
    )


@dag(
    dag_id="abgate_reports",
    schedule=os.environ.get("ABGATE_REPORTS_SCHEDULE", "0 6 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("ABGATE_DAG_RETRIES", "2")),
        "retry_delay": timedelta(minutes=10),
        "on_failure_callback": alert,
    },
    params={
        "experiments": Param(
            [], type="array", description="Experiment keys to report on (empty: every running one)"
        ),
        "archive": Param("", type="string", description="Archive root (or use bigquery)"),
        "bigquery": Param("", type="string", description="PROJECT.DATASET.TABLE of the sink"),
        "window_days": Param(0, type="integer", minimum=0, description="0: since the start"),
        "reports_dir": Param(
            os.environ.get("ABGATE_REPORTS_DIR", "/home/airflow/gcs/data/abgate-reports"),
            type="string",
        ),
    },
    tags=["abgate"],
    doc_md=__doc__,
)
def abgate_reports() -> None:
    """The daily reports (module docstring)."""

    @task
    def running() -> list[str]:
        listed = get_current_context()["params"]["experiments"]
        stored = {
            e["key"]: e["status"] for e in json.loads(abgate("experiments", "list", "--json"))
        }
        if not listed:
            log.info("no experiments listed: reporting on every running one in the store")
        keys = []
        for key in listed or sorted(stored):
            status = stored.get(key, "not in the store")
            if status == "running":
                keys.append(key)
            elif listed:
                log.info("%s is %s: no report", key, status)
        return keys

    @task
    def report(key: str) -> str:
        context = get_current_context()
        params = context["params"]
        end = context.get("data_interval_end") or context.get("logical_date") or datetime.now(UTC)
        out = Path(params["reports_dir"]) / f"{end:%Y-%m-%d}" / key
        out.mkdir(parents=True, exist_ok=True)
        args = [
            "-p",
            "experiment",
            key,
            "-p",
            "output_dir",
            str(out),
            "-p",
            "until",
            end.isoformat(),
        ]
        if params["window_days"]:
            since = end - timedelta(days=params["window_days"])
            args += ["-p", "since", since.isoformat()]
        for source in ("bigquery", "archive"):
            if params[source]:
                args += ["-p", source, params[source]]
        command = [
            *shlex.split(os.environ.get("ABGATE_PAPERMILL_COMMAND", "papermill")),
            str(notebook()),
            str(out / "report.ipynb"),
            *args,
        ]
        log.info("running %s", shlex.join(command))
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "")
            raise AbgateCommandFailed(f"report notebook of {key} failed: {last.strip()}")
        return str(out / "report.ipynb")

    report.expand(key=running())


dag_object = abgate_reports()
