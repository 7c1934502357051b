"""``abgate serve`` as a real process over real HTTP: start, serve, SIGTERM, every record flushed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from abgate.embedded import free_port
from tests.gateway.helpers import load_demo_data, read_archive, write_config

pytestmark = pytest.mark.slow


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited early: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a port that is not open yet: there is no event to await
    raise AssertionError(f"gateway did not become ready in {seconds} s: {log.read_text()}")


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


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one ``/metrics`` answer (a new connection: any worker may answer)."""
    text = httpx.get(url + "/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


OK_200 = ("abgate_requests_total", (("endpoint", "recommendations"), ("status", "200")))
LATENCY_COUNT = ("abgate_request_seconds_count", (("endpoint", "recommendations"),))


def _metrics_folder(worker: int) -> Path:
    """The PROMETHEUS_MULTIPROC_DIR a worker was started with."""
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    [value] = [v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(value.split(b"=", 1)[1].decode())


def _served_by(folder: Path, pid: int, tmp: Path) -> float:
    """Recommendations answered by one worker, from its own value file alone."""
    alone = tmp / f"worker-{pid}"
    alone.mkdir()
    shutil.copy(folder / f"counter_{pid}.db", alone)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return registry.get_sample_value("abgate_requests_total", dict(OK_200[1])) or 0.0


async def _recommend(url: str, n: int, first: int) -> None:
    """``n`` requests over 8 concurrent connections, each request on a new connection."""

    async def one(i: int) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post(
                "/v1/recommendations", json={"surface": "home_top", "unit_id": f"u{i % 20}"}
            )
            assert r.status_code == 200

    for start in range(first, first + n, 8):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 8, first + n))))


async def test_workers_export_one_set_of_counters_that_never_go_backwards(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=20)
    write_config(experiments_dir)
    env, url = _gateway_env(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # abgate serve makes (and removes) its own
    log = archive_dir.parent / "serve.log"
    proc = _serve(env, log, "--workers", "2")
    try:
        _wait_ready(url, proc, log)
        sent, seen = 0, []
        for _ in range(6):
            await _recommend(url, 30, sent)
            sent += 30
            for _ in range(3):  # several scrapes: each may reach either worker
                sample = _scrape(url)
                seen.append(sample[OK_200])
                assert sample[OK_200] == sample[LATENCY_COUNT] == sent, (sent, seen)
        workers = sorted(p for p in _children(proc.pid) if (Path("/proc") / str(p)).exists())
        folder = _metrics_folder(workers[0])
        served = {p: _served_by(folder, p, tmp_path) for p in workers if _has_values(folder, p)}
        assert len(served) == 2 and all(n > 0 for n in served.values()), served
        assert sum(served.values()) == sent
        sample = _scrape(url)
        rss = {dict(k[1])["pid"] for k in sample if k[0] == "process_resident_memory_bytes"}
        assert rss == {str(p) for p in served}
        assert sample[("abgate_log_spool_full", (("sink", "archive"),))] == 0  # livemax: no pid

        # A worker killed outright: uvicorn starts another; its counts stay in the total.
        killed = min(served)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            sample = _scrape(url)
            assert sample[OK_200] == sent
            pids = {dict(k[1])["pid"] for k in sample if k[0] == "process_resident_memory_bytes"}
            if len(pids) == 2 and str(killed) not in pids:
                break
            assert time.monotonic() < deadline, pids
            time.sleep(0.1)  # waiting for uvicorn's supervisor to replace the worker
        await _recommend(url, 10, sent)
        assert _scrape(url)[OK_200] == sent + 10
        assert not list(folder.glob(f"gauge_live*_{killed}.db"))  # its gauges no longer count
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert not folder.exists()
    assert "Traceback" not in log.read_text()


# Run at the start of every interpreter on PYTHONPATH; only uvicorn's spawned workers wait.
LATE_BOOT = """
import sys, time
if "--multiprocessing-fork" in sys.orig_argv:
    time.sleep(7)
"""


async def test_workers_that_boot_slower_than_uvicorns_default_healthcheck_are_not_killed(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    # uvicorn's supervisor pings each worker every 0.5 s and kills one that has not answered
    # within timeout_worker_healthcheck (5 s by default), boot included. On a loaded machine a
    # worker took longer than that to import the gateway, and every replacement was killed in
    # turn. Here each worker boots 7 s late.
    await load_demo_data(pg_dsn, schema, units=20)
    write_config(experiments_dir)
    env, url = _gateway_env(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    late = tmp_path / "late"
    late.mkdir()
    (late / "sitecustomize.py").write_text(LATE_BOOT)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(late), env.get("PYTHONPATH")]))
    log = archive_dir.parent / "serve.log"
    proc = _serve(env, log, "--workers", "2")
    try:
        _wait_ready(url, proc, log, seconds=120)
        deadline = time.monotonic() + 120
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)  # polling a log file: there is no event to await
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "died" not in log.read_text()


def _has_values(folder: Path, pid: int) -> bool:
    return (folder / f"counter_{pid}.db").exists()


async def test_a_metrics_folder_named_by_the_operator_is_emptied_at_start_and_exit(
    pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir, tmp_path
):
    await load_demo_data(pg_dsn, schema, units=20)
    write_config(experiments_dir)
    env, url = _gateway_env(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left by an earlier run")  # unreadable if kept
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    log = archive_dir.parent / "serve.log"
    proc = _serve(env, log, "--workers", "2")
    try:
        _wait_ready(url, proc, log)
        await _recommend(url, 8, 0)
        assert _scrape(url)[OK_200] == 8
        assert not (folder / "counter_1.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert folder.is_dir() and list(folder.glob("*.db")) == []
