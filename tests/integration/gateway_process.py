"""``abgate serve`` in a child process that a test can stop, pause (SIGSTOP) and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from abgate.embedded import free_port


class GatewayProcess:
    """A gateway process on a fixed free port, so that a restart keeps its URL."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "ABGATE_PORT": str(self.port)}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the gateway and wait until it answers /healthz."""
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "abgate", "serve"], env=self.env, stdout=f, stderr=f
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited early: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a port that is not open yet: there is no event to await
        raise AssertionError("gateway did not become ready in 30 s")

    def stop(self) -> None:
        """SIGTERM (the gateway flushes its log) and wait for the exit."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            message = f"gateway did not stop on SIGTERM: {self.log.read_text()}"
            raise AssertionError(message) from None
        finally:
            self.proc = None
        assert code in (0, -signal.SIGTERM), self.log.read_text()

    def pause(self) -> None:
        """SIGSTOP: the port stays open, the kernel still accepts connections, nobody answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
