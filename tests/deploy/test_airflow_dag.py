"""deploy/airflow/abgate_daily.py run by Airflow's own ``dag.test()`` against real servers.

Airflow lives in a venv of its own (``make airflow-venv``: ``.venv-airflow``, the ``airflow``
extra), since it is no dependency of abgate; the DAG's tasks run this tree's ``abgate`` with
this interpreter, on the test's Postgres schema, Redis prefix and an MLflow sqlite registry.
Skipped when no Python with Airflow is found (ABGATE_AIRFLOW_PYTHON, or .venv-airflow beside
the project's venv).

Cost: ~5 s of `airflow db migrate`, then ~30 s per DAG run (each task starts `abgate`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import asyncpg
import pytest
import redis

from tests.analysis.analysis_testkit import EXPERIMENT_YAML, simulate_archive
from tests.gateway.helpers import SURFACES, load_demo_data

ROOT = Path(__file__).resolve().parents[2]


def _airflow_python() -> str | None:
    candidates = [
        os.environ.get("ABGATE_AIRFLOW_PYTHON", ""),
        str(ROOT / ".venv-airflow/bin/python"),
        str(Path(sys.prefix).parent / ".venv-airflow/bin/python"),
    ]
    for python in filter(None, candidates):
        if (
            Path(python).exists()
            and subprocess.run([python, "-c", "import airflow"], capture_output=True).returncode
            == 0
        ):
            return python
    return None


AIRFLOW_PYTHON = _airflow_python()

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(
        AIRFLOW_PYTHON is None,
        reason="apache-airflow is not importable: no .venv-airflow (make airflow-venv) and "
        "ABGATE_AIRFLOW_PYTHON unset",
    ),
]


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Webhook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook():
    """A local HTTP endpoint standing for the alerting webhook; yields (url, bodies)."""
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.received = []
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alert", _Webhook.received
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def dag_env(tmp_path, pg_dsn, redis_url, schema, redis_prefix, webhook):
    """Environment of the DAG runs: Airflow's metadata (sqlite, migrated), abgate's servers."""
    home = tmp_path / "airflow"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "deploy/airflow"),
        "PYTHONPATH": str(ROOT),
        "ABGATE_COMMAND": f"{sys.executable} -m abgate",
        "ABGATE_PAPERMILL_COMMAND": f"{sys.executable} -m papermill",
        "JUPYTER_PLATFORM_DIRS": "1",
        "ABGATE_DAG_RETRIES": "0",
        "ABGATE_ALERT_WEBHOOK": webhook[0],
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "ABGATE_REDIS_URL": redis_url,
        "ABGATE_REDIS_PREFIX": redis_prefix,
        "ABGATE_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    airflow = Path(AIRFLOW_PYTHON).parent / "airflow"
    done = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return env


def _register(env: dict[str, str], features: Path, units: int) -> None:
    """A new MLflow version of home_recs (@champion) and its feature table."""
    done = subprocess.run(
        [sys.executable, "-m", "abgate", "batch", "example-model", "--units", str(units),
         "--features", str(features)],
        env=env, capture_output=True, text=True, cwd=features.parent,  # mlflow writes ./mlruns
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def _run_dag(env: dict[str, str], features: Path) -> dict[str, object]:
    return _run("abgate_daily", env, {"features": str(features), "top_k": 10, "min_coverage": 0.9})


def _run(dag_module: str, env: dict[str, str], conf: dict[str, object]) -> dict[str, object]:
    done = subprocess.run(
        [
            AIRFLOW_PYTHON,
            str(ROOT / "tests/deploy/airflow_driver.py"),
            dag_module,
            json.dumps(conf),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(env["ABGATE_DATA_DIR"]).parent,  # predict's mlflow runs write ./mlruns
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _keys(url: str, pattern: str) -> list[bytes]:
    with redis.from_url(url) as client:
        return list(client.scan_iter(match=pattern, count=1000))


async def _serving(pg_dsn: str, schema: str) -> dict[str, str]:
    conn = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
    try:
        aliases = await conn.fetch("SELECT model, alias, version FROM model_aliases")
        active = await conn.fetch("SELECT version FROM model_versions WHERE status = 'active'")
    finally:
        await conn.close()
    return {
        **{f"{r['model']}@{r['alias']}": r["version"] for r in aliases},
        "active": ",".join(sorted(r["version"] for r in active)),
    }


async def test_daily_dag_loads_validates_warms_and_moves_the_alias_and_refuses_a_bad_load(
    dag_env, tmp_path, pg_dsn, redis_url, schema, redis_prefix, webhook
):
    f1 = tmp_path / "features-1.parquet"
    _register(dag_env, f1, units=200)

    first = _run_dag(dag_env, f1)
    assert first["state"] == "success", first
    assert await _serving(pg_dsn, schema) == {"home_recs@champion": "1", "active": "1"}
    assert (
        len(_keys(redis_url, f"{redis_prefix}r:home_recs:1:*")) == 200
    )  # every unit, warmed before the alias moved

    again = _run_dag(dag_env, f1)  # the same day once more: a no-op that succeeds
    assert again["state"] == "success", again
    assert await _serving(pg_dsn, schema) == {"home_recs@champion": "1", "active": "1"}
    assert webhook[1] == []

    # Tomorrow's version covers half of today's units: the gate stops it before it serves.
    f2 = tmp_path / "features-2.parquet"
    _register(dag_env, f2, units=100)
    bad = _run_dag(dag_env, f2)
    assert bad["state"] == "failed"
    assert bad["tasks"]["validate"] == "failed"
    assert bad["tasks"]["activate"] == bad["tasks"]["sync"] == "upstream_failed"
    assert await _serving(pg_dsn, schema) == {"home_recs@champion": "1", "active": "1"}
    assert _keys(redis_url, f"{redis_prefix}r:home_recs:2:*") == []
    [alert] = webhook[1]
    assert "task validate" in alert["text"] and "coverage 50.0%" in alert["text"]


async def test_reports_dag_executes_the_notebook_for_each_running_experiment(
    dag_env, tmp_path, pg_dsn, schema
):
    await load_demo_data(pg_dsn, schema, units=5)
    files = tmp_path / "experiments"
    files.mkdir()
    (files / "surfaces.yaml").write_text(SURFACES)
    running = EXPERIMENT_YAML.replace("models:/home_recs/7", "models:/home_recs/2")
    (files / "running.yaml").write_text(running)
    (files / "draft.yaml").write_text(
        running.replace("key: home-recs-demo", "key: draft-exp").replace("running", "draft")
    )
    for f in ("surfaces.yaml", "running.yaml", "draft.yaml"):
        done = subprocess.run([sys.executable, "-m", "abgate", "experiments", "apply",
                               str(files / f)], env=dag_env, capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    archive = simulate_archive(
        tmp_path / "archive", units=300, rates={"control": 0.1, "treatment": 0.2}
    )
    reports = tmp_path / "reports"

    run = _run("abgate_reports", dag_env, {"experiments": ["home-recs-demo", "draft-exp"],
               "archive": str(archive), "reports_dir": str(reports)})  # fmt: skip
    assert run["state"] == "success", run

    kept = sorted(p.relative_to(reports).parts[1:] for p in reports.glob("*/*/*"))
    assert kept == [
        ("home-recs-demo", name) for name in ("lift.png", "report.ipynb", "report.json")
    ]
    executed = json.loads((next(reports.glob("*/home-recs-demo/report.ipynb"))).read_text())
    assert executed["metadata"]["papermill"]["parameters"]["experiment"] == "home-recs-demo"
    shown = json.loads(next(reports.glob("*/home-recs-demo/report.json")).read_text())
    cli = subprocess.run(
        [sys.executable, "-m", "abgate", "report", "home-recs-demo", "--archive", str(archive),
         "--format", "json"],
        env=dag_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown["variants"] == json.loads(cli.stdout)["variants"]

    # With no list, the DAG discovers the running experiments itself (experiments list --json).
    everything = tmp_path / "all-reports"
    run = _run("abgate_reports", dag_env, {"archive": str(archive),
               "reports_dir": str(everything)})  # fmt: skip
    assert run["state"] == "success", run
    assert sorted({p.relative_to(everything).parts[1] for p in everything.glob("*/*/*")}) == [
        "home-recs-demo"
    ]
