"""deploy/terraform: parsed with python-hcl2 and checked with checkov (no terraform providers
can be downloaded here, so neither `terraform validate` nor `plan` runs).

The parse checks what abgate relies on (the env it reads, probes, secrets, the log routing
that the stdout sink's label feeds); checkov checks the rest. checkov runs from its own venv
(`make deploy-tools`: .venv-checkov, or ABGATE_CHECKOV) since its pins clash with the
project's; that test is skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from experiments.settings import Settings

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed (the dev extra)")

TF = Path(__file__).resolve().parents[2] / "deploy/terraform"

pytestmark = pytest.mark.deploy


def _clean(node: Any) -> Any:
    """python-hcl2 keeps HCL's quotes around names and strings and adds bookkeeping keys."""
    if isinstance(node, dict):
        return {
            k.strip('"'): _clean(v)
            for k, v in node.items()
            if k not in ("__is_block__", "__comments__")
        }
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    """Every block of every .tf file, merged by kind: resource → type → name → body."""
    merged: dict[str, Any] = {"resource": {}, "variable": {}, "output": {}, "locals": {}}
    for path in sorted(TF.glob("*.tf")):
        with path.open() as f:
            doc = _clean(hcl2.load(f))
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                merged["resource"].setdefault(rtype, {}).update(named)
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
    return merged


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {d["env"]["for_each"]: d["env"]["content"][0] for d in container.get("dynamic", [])}


def test_every_variable_is_documented_and_typed(tf):
    assert tf["variable"], "no variables parsed"
    for name, body in tf["variable"].items():
        assert body.get("description", "").strip(), f"variable {name} has no description"
        assert "type" in body, f"variable {name} has no type"


def test_no_output_carries_a_secret(tf):
    secretish = re.compile(r"random_password|auth_string|secret_version|secret_data|password")
    for name, body in tf["output"].items():
        assert not secretish.search(json.dumps(body)), f"output {name} exposes a secret"
        assert body.get("description"), f"output {name} has no description"


def test_gateway_service_is_what_abgate_serve_expects(tf):
    svc = tf["resource"]["google_cloud_run_v2_service"]["gateway"]
    [template] = svc["template"]
    [scaling] = template["scaling"]
    assert scaling == {
        "min_instance_count": "${var.min_instances}",
        "max_instance_count": "${var.max_instances}",
    }
    assert template["max_instance_request_concurrency"] == "${var.concurrency}"
    assert template["vpc_access"][0]["connector"] == "${google_vpc_access_connector.main.id}"
    [container] = template["containers"]
    [resources] = container["resources"]
    assert resources["cpu_idle"] is False  # CPU always allocated, for the log writer
    assert container["ports"][0]["container_port"] == 8080
    for probe in ("startup_probe", "liveness_probe"):
        assert container[probe][0]["http_get"][0]["path"] == "/healthz"
    # Every variable set is a real setting; PORT is Cloud Run's to set (reserved).
    env_map = tf["locals"]["gateway_env"]
    plain = set(re.findall(r"(ABGATE_[A-Z_]+)\s*=", json.dumps(env_map)))
    assert "ABGATE_LOG_SINK" in plain
    fields = {f"ABGATE_{f.upper()}" for f in Settings.model_fields}
    secret_env = set(tf["locals"]["secrets"].values()) - {""}
    assert secret_env == {
        "ABGATE_POSTGRES_DSN",
        "ABGATE_REDIS_URL",
        "ABGATE_REDIS_READ_URL",
        "ABGATE_API_TOKENS",
    }
    assert (plain | secret_env) <= fields, sorted((plain | secret_env) - fields)
    assert "PORT" not in json.dumps(env_map)
    env = _env(container)
    assert env["${local.secret_env}"]["value_source"][0]["secret_key_ref"][0]["version"] == "latest"


def test_memorystore_has_a_read_replica_behind_the_read_url(tf):
    redis = tf["resource"]["google_redis_instance"]["cache"]
    assert redis["read_replicas_mode"] == "READ_REPLICAS_ENABLED"
    assert redis["replica_count"] == "${var.redis_read_replicas}"
    assert redis["auth_enabled"] is True
    assert "read_endpoint" in tf["locals"]["redis_read_url"]


def test_log_sinks_route_what_the_stdout_sink_labels(tf):
    # gateway/stdout_sink.py labels each line abgate_log=ABGATE_LOG_ID; the sinks filter on it.
    assert tf["variable"]["log_id"]["default"] == Settings().log_id
    assert 'labels.abgate_log=\\"${var.log_id}\\"' in tf["locals"]["events_filter"]
    sinks = tf["resource"]["google_logging_project_sink"]
    assert sinks["archive"]["destination"].startswith("storage.googleapis.com/")
    assert sinks["bigquery"]["destination"].startswith("bigquery.googleapis.com/")
    assert all(s["filter"] == "${local.events_filter}" for s in sinks.values())
    assert sinks["bigquery"]["bigquery_options"][0]["use_partitioned_tables"] is True


def test_schedulers_run_the_jobs_with_their_own_account(tf):
    jobs = tf["resource"]["google_cloud_scheduler_job"]
    for job in jobs.values():
        [target] = job["http_target"]
        assert target["uri"].endswith(":run")
        assert (
            "google_service_account.scheduler" in target["oauth_token"][0]["service_account_email"]
        )


def _checkov() -> str | None:
    for candidate in (
        os.environ.get("ABGATE_CHECKOV", ""),
        str(Path(sys.prefix).parent / ".venv-checkov/bin/checkov"),
        shutil.which("checkov") or "",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.mark.skipif(_checkov() is None, reason="checkov is not installed (make deploy-tools)")
def test_checkov_passes_and_every_skip_says_why():
    done = subprocess.run(
        [_checkov(), "-d", str(TF), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    summary = report["summary"]
    print(f"\ncheckov {summary['checkov_version']}: {summary}")
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and summary["parsing_errors"] == 0
    for c in report["results"]["skipped_checks"]:
        reason = c["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"{c['check_id']} on {c['resource']} is skipped without a reason"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary")
def test_terraform_files_are_formatted():
    done = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", str(TF)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
