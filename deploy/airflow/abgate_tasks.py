"""What abgate's DAGs share: running the ``abgate`` command, and the failure alert.

Airflow puts the DAG folder on ``sys.path``, so the DAG files import this module by name.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import urllib.request
from typing import Any

log = logging.getLogger("abgate.dag")


class AbgateCommandFailed(RuntimeError):
    """An ``abgate`` command exited non-zero; the message is its last error line."""


def abgate(*args: str) -> str:
    """Run ``ABGATE_COMMAND args…``; return stdout. Its stderr goes to the task log."""
    command = [*shlex.split(os.environ.get("ABGATE_COMMAND", "abgate")), *args]
    log.info("running %s", shlex.join(command))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stderr.splitlines():
        log.info("| %s", line)
    if done.returncode != 0:
        last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "")
        raise AbgateCommandFailed(f"abgate {args[0]} {args[1] if len(args) > 1 else ''} exited "
                                  f"{done.returncode}: {last.strip()}")  # fmt: skip
    return done.stdout


def alert(context: dict[str, Any]) -> None:
    """on_failure_callback: log the failure and POST it to ABGATE_ALERT_WEBHOOK if set."""
    ti = context.get("task_instance") or context.get("ti")
    text = (
        f"abgate DAG {getattr(ti, 'dag_id', '?')} failed at task {getattr(ti, 'task_id', '?')} "
        f"(run {context.get('run_id', '?')}, try {getattr(ti, 'try_number', '?')}): "
        f"{context.get('exception')}"
    )
    log.error(text)
    url = os.environ.get("ABGATE_ALERT_WEBHOOK")
    if url:
        body = json.dumps({"text": text}).encode()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
