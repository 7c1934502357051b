"""Instructions per request of one server process, under callgrind: ``python -m benchmarks.server_instructions``.

Deterministic where throughput and CPU time follow the machine's load (docs/benchmarks.md,
"Server cost"). Starts one server under ``valgrind --tool=callgrind``, warms it, zeroes the
counters (``callgrind_control -z``), sends ``--requests`` requests on ``--connections``
keep-alive connections, dumps the counters (``callgrind_control -d``) and prints the
instructions per request. callgrind acts on a command only while the process runs, so one
request at a time is sent until each command returns; those are counted in (±1 request).

Apps (``--app``):

- ``gw-local``: ``abgate serve`` with the in-process cache, 1,000 hot units (units.lua's mix);
- ``hello``: the bare Starlette ``/hello`` on ``abgate serve``'s server (GatewayHttpProtocol);
- ``hello-uvicorn``: the same app on plain uvicorn (httptools, uvloop), as server_cost's floor.

``--tree`` picks the code (PYTHONPATH), so two trees can be compared. The gateway needs the data
of ``python -m benchmarks.server_cost --keep`` (same ``--schema``, ``--redis-url``, ``--work``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from benchmarks.gateway import data
from benchmarks.gateway.servers import Server, free_port, warm
from benchmarks.server_cost import HOT_UNITS, PREFIX, load_average
from loadtests.client import Connection, Target

ROOT = Path(__file__).parents[1]


def bodies(app: str, count: int, seed: int = 1) -> list[bytes]:
    """Request bodies: units.lua's mix for the gateway, post.lua's for /hello (fixed seed)."""
    rng = random.Random(seed)
    units = HOT_UNITS if app == "gw-local" else 100_000
    out = []
    for _ in range(count):
        ex = ",".join(f'"sku-{rng.randrange(50_000)}"' for _ in range(20))
        unit = rng.randrange(units)
        out.append(
            b'{"surface":"home_top","unit_id":"u%d","exclude":[%s],"limit":10}'
            % (unit, ex.encode())
        )
    return out


async def trickle_until_done(url: str, cmd: list[str]) -> int:
    """Run ``cmd`` while sending one request at a time; the number of requests sent."""
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL)
    conn = Connection(Target.from_url(url))
    sent = 0
    body = bodies("hello", 1)[0] if url.endswith("/hello") else bodies("gw-local", 1)[0]
    try:
        while proc.returncode is None:
            await conn.request(body)
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.05)
    finally:
        conn.close()
    return sent


async def drive(url: str, payloads: list[bytes], connections: int) -> None:
    """Send every payload, ``connections`` at a time; fail on a non-200."""
    it = iter(payloads)

    async def worker() -> None:
        conn = Connection(Target.from_url(url))
        try:
            for body in it:
                status = await conn.request(body)
                if status != 200:
                    raise RuntimeError(f"status {status}")
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


def command(args: argparse.Namespace, port: int) -> tuple[list[str], dict[str, str], str]:
    """The server's command line, environment and load path."""
    py = [sys.executable]
    if args.app == "gw-local":
        env = {
            "ABGATE_POSTGRES_DSN": args.pg_dsn,
            "ABGATE_POSTGRES_SCHEMA": args.schema,
            "ABGATE_REDIS_URL": args.redis_url,
            "ABGATE_REDIS_PREFIX": PREFIX,
            "ABGATE_EXPERIMENTS_DIR": str(args.work / "experiments.d"),
            "ABGATE_ARCHIVE_DIR": str(args.work / "archive-cg"),
            "ABGATE_SPOOL_DIR": str(args.work / "spool-cg"),
            "ABGATE_LOCAL_CACHE_SIZE": str(HOT_UNITS * 4),
        }
        return [*py, "-m", "abgate", "serve", "--port", str(port)], env, "/v1/recommendations"
    if args.app == "hello":
        return [*py, "-m", "benchmarks.gateway.hello_app", "--port", str(port)], {}, "/hello"
    cmd = [*py, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    cmd += ["--factory", "benchmarks.gateway.hello_app:create_app", "--port", str(port)]
    return cmd, {}, "/hello"


def proc_counters(pid: int) -> tuple[float, float, int, int]:
    """User and system CPU seconds, read and write system calls of process ``pid``."""
    tick: int = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields[11]) / tick, int(fields[12]) / tick, int(io["syscr"]), int(io["syscw"])


def start(args: argparse.Namespace, tree: Path, valgrind: list[str]) -> Server:
    """The server of ``args.app`` from ``tree``, started, ready and warmed."""
    port = free_port()
    cmd, env, path = command(args, port)
    server = Server(args.app, valgrind + cmd, {**env, "PYTHONPATH": str(tree)}, port, path=path)
    server.cwd = tree
    server.start(args.work / "logs")
    server.wait_ready(b"{}" if path == "/hello" else bodies("gw-local", 1)[0], timeout=600)
    if args.app == "gw-local":
        warm(server.url, "home_top", range(HOT_UNITS), concurrency=8)
    asyncio.run(drive(server.url, bodies(args.app, 500, seed=2), args.connections))
    return server


def stop(server: Server) -> None:
    """SIGTERM the server (SIGKILL if it lingers)."""
    server.stop()
    if server.proc is not None and server.proc.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)


def count_instructions(args: argparse.Namespace, tree: Path) -> None:
    """One run under callgrind: instructions per request, printed."""
    out = args.work / f"callgrind.{args.app}.{os.getpid()}"
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-line=no"]
    server = start(args, tree, vg)
    try:
        pid = str(server.pid)
        before = asyncio.run(trickle_until_done(server.url, ["callgrind_control", "-z", pid]))
        asyncio.run(drive(server.url, bodies(args.app, args.requests), args.connections))
        after = asyncio.run(trickle_until_done(server.url, ["callgrind_control", "-d", pid]))
    finally:
        stop(server)
    dumps = sorted(args.work.glob(f"{out.name}.*"), key=lambda f: f.stat().st_mtime)
    total = 0
    for line in dumps[0].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
            break
    if not args.keep_dump:
        for d in [out, *dumps]:
            d.unlink(missing_ok=True)
    n = args.requests + after  # the ones trickled before the zeroing ended are not counted
    print(
        f"{args.app} tree={tree} requests={n} (+{before} before zero) "
        f"instructions={total:,} per request={total / n:,.0f} load={load_average()}",
        flush=True,
    )


def measure_cpu(args: argparse.Namespace) -> None:
    """One server per tree, rounds alternating: CPU and system calls per request, printed."""
    servers = [start(args, tree, []) for tree in args.tree]
    try:
        for rnd in range(args.rounds):
            order = list(zip(args.tree, servers, strict=True))
            for tree, server in order if rnd % 2 == 0 else reversed(order):
                c0 = proc_counters(server.pid)
                asyncio.run(drive(server.url, bodies(args.app, args.requests), args.connections))
                c1 = proc_counters(server.pid)
                user, system, reads, writes = (b - a for a, b in zip(c0, c1, strict=True))
                n = args.requests
                print(
                    f"round {rnd + 1} {args.app} tree={tree}: CPU {(user + system) / n * 1e6:.1f}"
                    f" µs/req (user {user / n * 1e6:.1f}, system {system / n * 1e6:.1f}), "
                    f"read calls {reads / n:.2f}/req, write calls {writes / n:.2f}/req, "
                    f"load {load_average()}",
                    flush=True,
                )
    finally:
        for server in servers:
            stop(server)


def main(argv: list[str] | None = None) -> None:
    """Instructions per request (callgrind), or CPU and system calls per request (/proc)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.server_instructions")
    p.add_argument("--app", choices=("gw-local", "hello", "hello-uvicorn"), default="gw-local")
    p.add_argument(
        "--tree", type=Path, action="append", help="code to run (PYTHONPATH); repeat to compare"
    )
    p.add_argument("--measure", choices=("instructions", "cpu"), default="instructions")
    p.add_argument("--requests", type=int, default=3000, help="per measurement (per round)")
    p.add_argument("--rounds", type=int, default=4, help="cpu: rounds, trees alternating")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--keep-dump", action="store_true", help="keep callgrind's files (annotate)")
    data.add_data_options(
        p, units=None, schema="abgate_srvbench", work=Path("/tmp/abgate-srvbench")
    )
    args = p.parse_args(argv)
    args.tree = args.tree or [ROOT]
    if args.measure == "cpu":
        measure_cpu(args)
        return
    for tree in args.tree:
        count_instructions(args, tree)


if __name__ == "__main__":
    main()
