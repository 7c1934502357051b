"""Processes the benchmark starts: gateways, reference apps, Feast; each on its own port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.client import ClientError, Connection, Target
from loadtests.runner import run


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One server process; ``url`` is the endpoint the load goes to."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    port: int
    path: str = "/v1/recommendations"
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The load endpoint."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self, log_dir: Path) -> None:
        """Start the process, its output to ``log_dir/NAME.log``."""
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{self.name}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, probe: bytes, timeout: float = 120.0) -> None:
        """Wait until a POST of ``probe`` gets a 200."""
        deadline = time.monotonic() + timeout
        target = Target.from_url(self.url)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                if run(_post_once(target, probe)) == 200:
                    return
            except (ClientError, TimeoutError):
                pass
            time.sleep(0.2)  # nothing to wait on but the port opening
        raise RuntimeError(f"{self.name} not ready after {timeout} s")

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident memory of the process, in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def _post_once(target: Target, body: bytes) -> int:
    conn = Connection(target)
    try:
        return await asyncio.wait_for(conn.request(body), 5.0)
    finally:
        conn.close()


async def _warm(url: str, bodies: list[bytes], concurrency: int) -> dict[int, int]:
    target = Target.from_url(url)
    statuses: dict[int, int] = {}
    it = iter(bodies)

    async def worker() -> None:
        conn = Connection(target)
        try:
            for body in it:
                status = await conn.request(body)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def warm(url: str, surface: str, units: range, concurrency: int = 32) -> dict[int, int]:
    """Ask for each unit once (fills the gateway's Redis and in-process caches)."""
    bodies = [b'{"surface":"%s","unit_id":"u%d","limit":10}' % (surface.encode(), u) for u in units]
    return run(_warm(url, bodies, concurrency))
