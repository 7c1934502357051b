"""Slow and greedy clients against a running gateway, with raw sockets; prints what it measured.

``python -m benchmarks.slow_clients --url http://127.0.0.1:8000 --pid PID``

Four phases, each with ``--clients`` connections, while a probe sends one good request at a time:
- slow headers: the request line and half a header, then nothing;
- stalled body: headers announcing a body, a few bytes of it, then nothing;
- slow readers: ``--readers`` connections each writing ``--pipeline`` requests at once and
  reading nothing for 15 s (then counting the answers that came);
- storm: every connection sends a whole request at the same moment.

For each: how many connections the server closed and how long after the last byte sent (the
header/body timeouts), the probe's p50/p99 and failures meanwhile, the answers by status, and
the gateway's resident memory before and after (``--pid``). Run by hand, never as a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections import Counter
from pathlib import Path

BODY = b'{"surface":"cart_upsell","unit_id":"u1","limit":30}'  # no exposure logged


def request(body: bytes = BODY) -> bytes:
    """One POST /v1/recommendations, keep-alive."""
    return (
        b"POST /v1/recommendations HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of ``pid`` in MiB (from /proc)."""
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


class Probe:
    """One good request at a time on fresh connections; latencies and failures."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), 5
                )
                writer.write(request())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                self.statuses[head.split(b" ")[1].decode()] += 1
                writer.close()
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.statuses[type(exc).__name__] += 1
            self.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)

    def summary(self) -> str:
        if not self.latencies:
            return "probe: no request"
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return (
            f"probe: {len(ms)} requests, p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, "
            f"answers {dict(self.statuses)}"
        )


async def hold(host: str, port: int, first: bytes, wait: float) -> tuple[str, float | None]:
    """Send ``first``, then read until the server closes; (first status seen, seconds to close)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return type(exc).__name__, None
    writer.write(first)
    sent = time.perf_counter()
    status = "none"
    try:
        data = await asyncio.wait_for(reader.read(), wait)
        if data.startswith(b"HTTP/1.1 "):
            status = data.split(b" ")[1].decode()
        return status, time.perf_counter() - sent
    except (TimeoutError, OSError):
        return status, None
    finally:
        writer.close()


async def unread(host: str, port: int, first: bytes, wait: float) -> tuple[str, float | None]:
    """Send ``first`` and read nothing for ``wait`` seconds; then (answers read, None)."""
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=2**26)
    except OSError as exc:
        return type(exc).__name__, None
    writer.transport.pause_reading()  # the kernel buffers fill, then the server's
    writer.write(first)
    await asyncio.sleep(wait)
    writer.transport.resume_reading()
    try:
        data = await asyncio.wait_for(reader.read(), 30)
    except (TimeoutError, OSError):
        data = b""
    writer.close()
    return f"{data.count(b'HTTP/1.1 200')} answers", None


async def phase(
    name: str, host: str, port: int, first: bytes, clients: int, wait: float, pid: int | None
) -> None:
    probe = Probe(host, port)
    probe_task = asyncio.create_task(probe.run())
    before = rss_mb(pid)
    started = time.perf_counter()
    run = unread if name == "slow readers" else hold
    tasks = [asyncio.create_task(run(host, port, first, wait)) for _ in range(clients)]
    peak = before
    while not all(t.done() for t in tasks):
        await asyncio.sleep(0.2)
        now = rss_mb(pid)
        if now is not None and (peak is None or now > peak):
            peak = now
    results = [t.result() for t in tasks]
    probe.stop.set()
    await probe_task
    closes = sorted(s for _, s in results if s is not None)
    statuses = Counter(status for status, _ in results)
    print(f"## {name}: {clients} connections, {time.perf_counter() - started:.1f} s")
    if closes:
        print(
            f"closed by the server: {len(closes)}/{clients}, after {closes[0]:.2f} s (first), "
            f"{statistics.median(closes):.2f} s (median), {closes[-1]:.2f} s (last)"
        )
    else:
        print(f"closed by the server: 0/{clients} within {wait:.0f} s")
    print(f"answers: {dict(statuses)}")
    print(probe.summary())
    if before is not None:
        print(f"gateway RSS: {before:.0f} MiB before, {peak:.0f} MiB peak")
    print()


async def main(args: argparse.Namespace) -> None:
    host, port = args.url.removeprefix("http://").rstrip("/").split(":")
    p = int(port)
    wait = args.wait
    await phase(
        "slow headers",
        host,
        p,
        b"POST /v1/recommendations HTTP/1.1\r\nhost: g",
        args.clients,
        wait,
        args.pid,
    )
    stalled = request()[: -len(BODY) + 5]
    await phase("stalled body", host, p, stalled, args.clients, wait, args.pid)
    await phase("slow readers", host, p, request() * args.pipeline, args.readers, 15.0, args.pid)
    await phase("storm", host, p, request(), args.clients * 4, wait, args.pid)


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, help="the gateway's process id, for its memory")
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--readers", type=int, default=50, help="slow readers")
    p.add_argument(
        "--pipeline", type=int, default=3000, help="requests per slow reader (beyond the buffers)"
    )
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a close")
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
