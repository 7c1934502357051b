"""``abgate serve`` as a real process over real HTTP: start, serve, SIGTERM, every record flushed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from abgate.embedded import free_port
from tests.gateway.helpers import load_demo_data, read_archive, write_config

pytestmark = pytest.mark.slow


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited early: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a port that is not open yet: there is no event to await
    raise AssertionError("gateway did not become ready in 30 s")


def _serve(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "abgate", "serve", *args], env=env, stdout=f, stderr=f
        )


def _gateway_env(
    pg_dsn: str, redis_url: str, schema: str, prefix: str, experiments: Path, archive: Path
) -> tuple[dict[str, str], str]:
    """The environment of a test gateway on a free port, and its URL. Nothing is flushed on
    the timer during a test: only shutdown can write the records."""
    port = free_port()
    env = {
        **os.environ,
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "ABGATE_REDIS_URL": redis_url,
        "ABGATE_REDIS_PREFIX": prefix,
        "ABGATE_EXPERIMENTS_DIR": str(experiments),
        "ABGATE_ARCHIVE_DIR": str(archive),
        "ABGATE_PORT": str(port),
        "ABGATE_LOG_FLUSH_INTERVAL": "600",
    }
    return env, f"http://127.0.0.1:{port}"


async def test_sigterm_flushes_every_accepted_record(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir
):
    await load_demo_data(pg_dsn, schema, units=20)
    write_config(experiments_dir)
    env, url = _gateway_env(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    log = archive_dir.parent / "serve.log"
    proc = _serve(env, log)
    try:
        _wait_ready(url, proc, log)
        async with httpx.AsyncClient(base_url=url) as client:
            for i in range(40):
                r = await client.post(
                    "/v1/recommendations", json={"surface": "home_top", "unit_id": f"u{i % 20}"}
                )
                assert r.status_code == 200
            e = await client.post(
                "/v1/events", json=[{"unit_id": f"u{i}", "name": "purchase"} for i in range(15)]
            )
            assert e.status_code == 202
        assert read_archive(archive_dir) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    # uvicorn re-raises the captured signal after a graceful shutdown.
    assert code in (0, -signal.SIGTERM), log.read_text()
    entries = read_archive(archive_dir)
    kinds = [e["jsonPayload"]["type"] for e in entries]
    assert kinds.count("exposure") == 40
    assert kinds.count("outcome") == 15
    assert len({e["insertId"] for e in entries}) == 55


def test_invalid_config_stops_serve_with_the_file_and_field(tmp_path: Path, pg_dsn, redis_url):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "exp.yaml").write_text("key: e\nsurface: s\ntraffic: 2\nvariants: []\n")
    env = {
        **os.environ,
        "ABGATE_EXPERIMENTS_DIR": str(folder),
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_REDIS_URL": redis_url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "abgate", "serve"], env=env, capture_output=True, timeout=60
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert "exp.yaml:3: field 'traffic'" in err
    assert "exp.yaml:4: field 'variants'" in err
    assert "Traceback" not in err


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


async def test_workers_share_the_port_and_flush_every_record_on_sigterm(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir
):
    await load_demo_data(pg_dsn, schema, units=20)
    write_config(experiments_dir)
    env, url = _gateway_env(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    log = archive_dir.parent / "serve.log"
    proc = _serve(env, log, "--workers", "2")
    try:
        _wait_ready(url, proc, log)
        workers = _children(proc.pid)
        for i in range(60):  # a new connection each: the workers take turns accepting
            async with httpx.AsyncClient(base_url=url) as client:
                r = await client.post(
                    "/v1/recommendations", json={"surface": "home_top", "unit_id": f"u{i % 20}"}
                )
                assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert len([w for w in workers if w != proc.pid]) >= 2, workers  # + the spawn helper, if any
    entries = read_archive(archive_dir)
    assert [e["jsonPayload"]["type"] for e in entries].count("exposure") == 60
    assert len({e["insertId"] for e in entries}) == 60
    assert "Traceback" not in log.read_text()
