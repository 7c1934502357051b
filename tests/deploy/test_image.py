"""The gateway image, built here and run against the machine's Postgres and Redis.

Builds with deploy/container/build.sh (a Debian root file system as the base: no registry is
reachable here), runs the image with the test's own schema and key prefix, and checks what
Cloud Run relies on: PORT honoured, /readyz ready, a recommendation, the exposure as a JSON
line on stdout, a non-root user, and a clean exit on SIGTERM within Cloud Run's 10 s. Both
images run the compiled extensions (gateway._exposure, experiments._bucket), not their Python
fallbacks, and carry no C compiler (the build base compiles them).

Cost: the first build on a machine makes the two root file systems, runtime and build (~1 min
each, cached in ~/.cache/abgate/images), and the dependency layers (~45 s, cached in podman's
store); after that a code change rebuilds one small layer and the copy of the venv (~20 s). Skipped where podman or mmdebstrap is
missing (`make deploy-tools` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from abgate.embedded import free_port
from tests.gateway.helpers import load_demo_data, write_config

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(
        not (shutil.which("podman") and shutil.which("mmdebstrap")),
        reason="podman and mmdebstrap are not installed (make deploy-tools)",
    ),
]


# Run in the image: the compiled extensions are the ones in use (setup.py builds them only where
# a C compiler and OpenSSL's headers are, and falls back silently), and no compiler is shipped.
NATIVE_AND_NO_COMPILER = (
    "python3 -c 'import gateway.exposure_json as e, experiments.assignment as a;"
    ' print("native encoder", e.NATIVE);'
    ' print("native bucket", a.bucket is not a.python_bucket)\''
    " && echo compilers: $(command -v gcc cc)"
)
EXPECTED_NATIVE = ["native encoder True", "native bucket True", "compilers:"]


def _podman_options() -> tuple[list[str], list[str]]:
    """Global and run options this host needs (deploy/container/podman-host.sh decides)."""
    base = next(
        line.split()[0]
        for line in subprocess.run(
            ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", "abgate-base"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    )
    out = subprocess.run(
        ["sh", "-c", '. deploy/container/podman-host.sh && echo "$PODMAN_GLOBAL|$PODMAN_LIMITS"'],
        cwd=ROOT,
        env={**os.environ, "PODMAN_PROBE_IMAGE": base},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    glob, limits = out.split("|")
    return glob.split(), limits.split()


def _build(target: str) -> str:
    """The image of ``target``, built (or brought up to date) from this tree."""
    t0 = time.monotonic()
    done = subprocess.run(
        ["sh", "deploy/container/build.sh", target],
        cwd=ROOT,
        env={**os.environ, "ABGATE_IMAGE_TAG": "test"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    image = done.stdout.strip().splitlines()[-1]
    size = subprocess.run(
        ["podman", "image", "inspect", image, "--format", "{{.Size}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"\nbuilt {image} in {time.monotonic() - t0:.1f} s; size {int(size) / 1e6:.0f} MB")
    return image


@pytest.fixture(scope="module")
def gateway_image() -> str:
    """The gateway image of this tree."""
    return _build("gateway")


def _wait_ready(url: str, name: str, deadline_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/readyz", timeout=1)
            if r.status_code == 200:
                return r
        except httpx.TransportError:
            pass
        state = subprocess.run(
            ["podman", "inspect", name, "--format", "{{.State.Status}}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if state not in ("running", "created", "configured", "initialized"):
            logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
            raise AssertionError(f"container {state}: {logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        time.sleep(0.1)  # polling a port that is not open yet: there is no event to await
    raise AssertionError(f"the gateway in {name} was not ready in {deadline_s:.0f} s")


async def test_image_serves_a_recommendation_from_real_postgres_and_redis(
    gateway_image, pg_dsn, redis_url, schema, redis_prefix, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=20)
    config = tmp_path / "config"
    config.mkdir()
    write_config(config)
    config.chmod(0o755)
    for f in config.iterdir():
        f.chmod(0o644)
    glob, limits = _podman_options()
    name = f"abgate-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    t0 = time.monotonic()
    subprocess.run(
        [
            "podman", *glob, "run", "--detach", "--name", name, "--network", "host",
            "--no-healthcheck", *limits,
            "--env", f"PORT={port}",  # as Cloud Run sets it; ABGATE_PORT is left unset
            "--env", f"ABGATE_POSTGRES_DSN={pg_dsn}",
            "--env", f"ABGATE_POSTGRES_SCHEMA={schema}",
            "--env", f"ABGATE_REDIS_URL={redis_url}",
            "--env", f"ABGATE_REDIS_PREFIX={redis_prefix}",
            "--env", "ABGATE_EXPERIMENTS_DIR=/config",
            "--volume", f"{config}:/config:ro",
            gateway_image,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        ready = _wait_ready(url, name)
        print(f"\ncold start to first 200 on /readyz: {time.monotonic() - t0:.2f} s")
        body = ready.json()
        assert body["status"] == "ready", body
        assert body["checks"]["postgres"] == "ok" and body["checks"]["redis"] == "ok", body

        r = httpx.post(
            url + "/v1/recommendations",
            json={"surface": "home_top", "unit_id": "u3", "limit": 5},
            timeout=5,
        )
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["experiment"] == "home-exp"
        version = rec["model"]["version"]
        assert [i["id"] for i in rec["items"]] == [f"home_recs-v{version}-u3-{i}" for i in range(5)]
        user = subprocess.run(
            ["podman", "exec", name, "id", "-u"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert user == "10001"
        native = subprocess.run(
            ["podman", "exec", name, "sh", "-c", NATIVE_AND_NO_COMPILER],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert native == EXPECTED_NATIVE
    finally:
        subprocess.run(["podman", "stop", "--time", "10", name], capture_output=True)
        exit_code = subprocess.run(
            ["podman", "inspect", name, "--format", "{{.State.ExitCode}}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
        subprocess.run(["podman", "rm", "--force", name], capture_output=True)
    # SIGTERM, not the SIGKILL 10 s later: the queue was flushed and the process exited 0.
    assert exit_code == "0", logs.stderr[-2000:]
    # The stdout sink wrote the exposure as one JSON line (Cloud Run's agent reads stdout).
    exposures = [
        json.loads(line)
        for line in logs.stdout.splitlines()
        if line.startswith("{") and '"exposure"' in line
    ]
    assert [(e["unit_id"], e["severity"]) for e in exposures] == [("u3", "INFO")]
    # Diagnostics are JSON lines on stderr with Cloud Logging's fields.
    diag = [json.loads(line) for line in logs.stderr.splitlines() if line.startswith("{")]
    assert diag and all({"time", "severity", "message"} <= d.keys() for d in diag)
    # The process that served said nothing about a missing encoder (gateway/serving.py warns).
    assert not [d for d in diag if "encoder is not built" in d["message"]]


def test_batch_image_runs_the_batch_commands_with_their_extras():
    image = _build("batch")
    glob, limits = _podman_options()
    done = subprocess.run(
        ["podman", *glob, "run", "--rm", "--network", "none", *limits, "--entrypoint", "sh",
         image, "-c",
         "id -u && " + NATIVE_AND_NO_COMPILER
         + " && python3 -c 'import mlflow, pyarrow, google.cloud.bigquery, google.cloud.storage'"
         " && abgate batch predict --help"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[:4] == ["10001", *EXPECTED_NATIVE]
    assert "--top-k" in done.stdout
