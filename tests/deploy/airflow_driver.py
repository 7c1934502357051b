"""Run abgate's daily DAG once with Airflow's own ``dag.test()``, in a Python that has Airflow.

    AIRFLOW_HOME=… AIRFLOW__CORE__DAGS_FOLDER=deploy/airflow python airflow_driver.py abgate_daily '{…}'

Prints the run's state and each task's as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])  # as Airflow does

module = importlib.import_module(sys.argv[1])  # the DAG file
run = module.dag_object.test(run_conf=json.loads(sys.argv[2]))
tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print(json.dumps({"state": str(run.state), "tasks": tasks}))
