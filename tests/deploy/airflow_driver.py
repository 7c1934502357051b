"""Run abgate's daily DAG once with Airflow's own ``dag.test()``, in a Python that has Airflow.

    AIRFLOW_HOME=… AIRFLOW__CORE__DAGS_FOLDER=deploy/airflow python airflow_driver.py '{"features": …}'

Prints the run's state and each task's as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])

import abgate_daily  # the DAG file, found as Airflow finds it

run = abgate_daily.dag_object.test(run_conf=json.loads(sys.argv[1]))
tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print(json.dumps({"state": str(run.state), "tasks": tasks}))
