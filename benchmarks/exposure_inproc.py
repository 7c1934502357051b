"""An exposure's cost through the real app, in one process: ``python -m benchmarks.exposure_inproc``.

The gateway app (``create_app``, its lifespan, archive logging on, real Postgres and Redis, the
benchmark's data) driven directly through ASGI by ``--concurrency`` coroutines: no HTTP server,
no wrk, no second process competing for the cores. The experiment's surface (every answer logs
an exposure) and the no-experiment surface alternate in blocks of ``--requests``; the figure is
the process's CPU time per request (``time.process_time``), median of ``--rounds`` blocks each.

``--callgrind`` instead runs one block of each surface and switches callgrind's instrumentation
on around each block (run it under ``valgrind --tool=callgrind --instr-atstart=no``): the
instruction counts per request it prints to stderr come from ``callgrind_control``'s dumps,
which are deterministic enough to compare trees on a busy machine (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.exposure_cost import SURFACES
from benchmarks.gateway import data
from benchmarks.gateway.__main__ import _drop_schema, _loaded
from experiments.settings import Settings
from loadtests import run

PREFIX = "abgate-expoinproc:"
PATH = "/v1/recommendations"


def bodies(surface: str, units: int, n: int, seed: int) -> list[bytes]:
    """Request bodies as benchmarks/gateway/lua/units.lua makes them (20 random exclusions)."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        ex = ",".join(f'"sku-{rnd.randint(0, 49_999)}"' for _ in range(20))
        out.append(
            b'{"surface":"%s","unit_id":"u%d","exclude":[%s],"limit":10}'
            % (surface.encode(), rnd.randrange(units), ex.encode())
        )
    return out


async def call(app: Any, body: bytes) -> int:
    """One POST through the ASGI app; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        return {}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def block(app: Any, reqs: list[bytes], concurrency: int) -> None:
    """Every request of ``reqs``, ``concurrency`` at a time."""
    it = iter(reqs)

    async def worker() -> None:
        for body in it:
            status = await call(app, body)
            if status != 200:
                raise RuntimeError(f"status {status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_case(app: Any, case: str, reqs: list[bytes], concurrency: int) -> None:
    """One block; ``nolog``: the experiment's surface with ``log_exposure`` a no-op."""
    if case != "nolog":
        await block(app, reqs, concurrency)
        return
    gw = app.state.abgate.running()
    real = gw.log_exposure
    gw.log_exposure = lambda *a, **k: None
    try:
        await block(app, reqs, concurrency)
    finally:
        gw.log_exposure = real


class Lifespan:
    """The app's lifespan, run by hand."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        msg = await self.outbox.get()
        if msg["type"] != "lifespan.startup.complete":
            raise RuntimeError(str(msg))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        if self.task is not None:
            await self.task


def callgrind(on: bool) -> None:
    """Switch callgrind's instrumentation of this process on or off (and dump when off)."""
    pid = str(os.getpid())
    if on:
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    else:
        subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)


async def measure(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    """CPU µs per request of each surface, one figure per block."""
    from gateway import create_app

    settings = Settings(
        postgres_dsn=args.pg_dsn,
        postgres_schema=args.schema,
        redis_url=args.redis_url,
        redis_prefix=PREFIX,
        experiments_dir=work / "experiments.d",
        archive_dir=work / "archive",
        spool_dir=work / "spool",
        local_cache_size=args.local_cache,
        log_flush_interval=args.flush_interval,
        log_batch_size=args.batch_size,
        # under valgrind a request takes ~50x longer: no timeouts (they would change the path)
        redis_timeout=60.0 if args.callgrind else Settings().redis_timeout,
        postgres_timeout=60.0 if args.callgrind else Settings().postgres_timeout,
    )
    app = create_app(settings)
    reqs = {
        k: bodies(s, args.units, args.requests, seed=i) for i, (k, s) in enumerate(SURFACES.items())
    }
    reqs["nolog"] = reqs["on"]
    cases = args.cases.split(",")
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    async with Lifespan(app):
        for k in ("on", "off"):  # warm-up: caches, first-call paths
            await block(app, reqs[k][: args.requests // 4], args.concurrency)
        if args.callgrind:
            for k in cases:
                callgrind(True)
                await run_case(app, k, reqs[k], args.concurrency)
                subprocess.run(
                    ["callgrind_control", "-d", f"{k}", str(os.getpid())],
                    check=True,
                    capture_output=True,
                )
                callgrind(False)
            return cpu
        for rnd in range(args.rounds):
            for k in cases if rnd % 2 == 0 else cases[::-1]:
                t0 = time.process_time()
                await run_case(app, k, reqs[k], args.concurrency)
                cpu[k].append((time.process_time() - t0) / args.requests * 1e6)
    return cpu


def main(argv: list[str] | None = None) -> None:
    """Prepare the data, measure, print."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.exposure_inproc", description=__doc__)
    data.add_data_options(p, units=10_000, schema="abgate_expoinproc", work=None)
    p.add_argument("--requests", type=int, default=20_000, help="requests per block")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--cases", default="on,off", help="on, off, nolog (on without log_exposure)")
    p.add_argument("--flush-interval", type=float, default=0.2, help="ABGATE_LOG_FLUSH_INTERVAL")
    p.add_argument("--batch-size", type=int, default=1000, help="ABGATE_LOG_BATCH_SIZE")
    p.add_argument("--local-cache", type=int, default=0, help="ABGATE_LOCAL_CACHE_SIZE")
    p.add_argument("--callgrind", action="store_true", help="see the module's docstring")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop, as abgate serve does")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="abgate-expoinproc-") as tmp:
        work = args.work or Path(tmp)
        data.write_config(work / "experiments.d")
        if not run(_loaded(args)):
            files = data.results_files(work, args.units, args.items)
            run(_drop_schema(args.pg_dsn, args.schema))
            data.load_results(files, args.pg_dsn, args.schema)
            data.warm_cache(args.pg_dsn, args.schema, args.redis_url, PREFIX)
        if args.uvloop:
            import uvloop

            cpu = uvloop.run(measure(args, work))
        else:
            cpu = asyncio.run(measure(args, work))
    if args.callgrind:
        return
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"in-process, {args.requests:,} requests x {args.rounds} rounds per case, load {load}")
    for k in cpu:
        rounds = " / ".join(f"{x:.1f}" for x in cpu[k])
        print(f"  {k:>5}: median {statistics.median(cpu[k]):.1f} µs/req  rounds {rounds}")
    if "on" in cpu and "off" in cpu:
        on, off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
        print(f"  on - off: {on - off:.1f} µs; CPU ratio off/on {off / on:.3f}")


if __name__ == "__main__":
    main()
