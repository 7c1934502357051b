"""What an exposure costs the gateway, in CPU: ``python -m benchmarks.exposure_cost``.

One ``abgate serve`` (uvicorn, one worker, archive logging on) on the benchmark's data; wrk
alternates between the experiment's surface (every answer logs an exposure) and a surface with
no experiment (no exposure), for many short rounds. Per round it reads the server's CPU time
(user + system, /proc/PID/stat) around each run: CPU per request is far less disturbed by
other work on a shared machine than requests per second, and the difference between the two
surfaces is the exposure's cost (plus the assignment hash, ~1 µs). Also reported: the
throughput ratio within each round, the figure the issue's goal is stated in (>= 0.95).

``--profile`` py-spies one run of each surface (needs py-spy) and prints where the extra
samples of the logging surface go. Small data by default (10,000 units): the exposure's cost
does not depend on it. docs/benchmarks.md has the results.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.gateway import data
from benchmarks.gateway.__main__ import _drop_schema, _loaded
from benchmarks.gateway.profile import summarise, to_markdown
from benchmarks.gateway.servers import Server, free_port
from benchmarks.gateway.wrk import run_wrk
from benchmarks.server_cost import LUA, PROBE, group_cpu_seconds, load_average, say
from loadtests import run

PREFIX = "abgate-expobench:"
SURFACES = {"on": "home_top", "off": "home_nolog"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.exposure_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data.add_data_options(
        p, units=10_000, schema="abgate_expobench", work=Path("/tmp/abgate-expobench")
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--keep", action="store_true", help="keep schema and keys for a re-run")
    p.add_argument("--profile", action="store_true", help="py-spy one run of each surface")
    p.add_argument("--label", default="", help="a name for this run in the output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Prepare, start one gateway, alternate the surfaces, report."""
    args = parse_args(argv)
    work = args.work
    config_dir = work / "experiments.d"
    data.write_config(config_dir)
    files = data.results_files(work, args.units, args.items)
    if not run(_loaded(args)):
        run(_drop_schema(args.pg_dsn, args.schema))
        data.load_results(files, args.pg_dsn, args.schema)
    port = free_port()
    gw = Server(
        "gw",
        [str(Path(sys.executable).parent / "abgate"), "serve", "--port", str(port)],
        {
            "ABGATE_POSTGRES_DSN": args.pg_dsn,
            "ABGATE_POSTGRES_SCHEMA": args.schema,
            "ABGATE_REDIS_URL": args.redis_url,
            "ABGATE_REDIS_PREFIX": PREFIX,
            "ABGATE_EXPERIMENTS_DIR": str(config_dir),
            "ABGATE_ARCHIVE_DIR": str(work / "archive"),
            "ABGATE_SPOOL_DIR": str(work / "spool"),
            "ABGATE_LOCAL_CACHE_SIZE": "0",
        },
        port,
    )
    env = {k: {"WRK_SURFACE": s, "WRK_UNITS": str(args.units)} for k, s in SURFACES.items()}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    rps: dict[str, list[float]] = {"on": [], "off": []}
    lines = [f"exposure cost {args.label}: load average at start {load_average()}"]
    try:
        gw.start(work / "logs")
        gw.wait_ready(PROBE)
        data.warm_cache(args.pg_dsn, args.schema, args.redis_url, PREFIX)
        for k in ("on", "off"):
            run_wrk(gw.url, LUA / "units.lua", duration=2, env=env[k])
        for rnd in range(args.rounds):
            for k in ("on", "off") if rnd % 2 == 0 else ("off", "on"):
                c0 = group_cpu_seconds(gw.pid)
                r = run_wrk(gw.url, LUA / "units.lua", duration=args.duration, env=env[k])
                cpu[k].append((group_cpu_seconds(gw.pid) - c0) / r.requests * 1e6)
                rps[k].append(r.rps)
                say(f"round {rnd + 1} logging {k}: {r.rps:,.0f} req/s, {cpu[k][-1]:.1f} µs/req")
        if args.profile:
            for k in ("on", "off"):
                lines.append(_profile(gw, env[k], args.duration, work, k))
    finally:
        gw.stop()
        if not args.keep:
            run(_drop_schema(args.pg_dsn, args.schema))
            data.delete_keys(args.redis_url, PREFIX + "*")
    on, off = _median(cpu["on"]), _median(cpu["off"])
    ratios = [a / b for a, b in zip(rps["on"], rps["off"], strict=True)]
    lines += [
        f"wrk -t1 -c32 -d{args.duration:g}s, {args.rounds} rounds, surfaces alternating "
        f"(ABBA); load average at the end {load_average()}",
        "",
        "| figure | value | per round |",
        "|---|---:|---|",
        f"| CPU µs/request, exposure logged (median) | {on:.1f} | "
        + " / ".join(f"{x:.1f}" for x in cpu["on"])
        + " |",
        f"| CPU µs/request, no exposure (median) | {off:.1f} | "
        + " / ".join(f"{x:.1f}" for x in cpu["off"])
        + " |",
        f"| CPU per exposure (difference) | {on - off:.1f} µs | |",
        f"| CPU ratio off / on (the throughput ratio CPU alone predicts) | {off / on:.3f} | |",
        f"| req/s ratio on / off (median of rounds) | {_median(ratios):.3f} | "
        + " / ".join(f"{x:.2f}" for x in ratios)
        + " |",
    ]
    print("\n".join(lines))


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return (s[n // 2] + s[(n - 1) // 2]) / 2


def _profile(gw: Server, env: dict[str, str], seconds: float, work: Path, k: str) -> str:
    raw = work / f"profile-{k}.txt"
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "-p", str(gw.pid), "-d", str(int(seconds)), "-r", "250"]
    proc = subprocess.Popen(
        [*cmd, "-f", "raw", "-o", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    r = run_wrk(gw.url, LUA / "units.lua", duration=seconds, env=env)
    proc.wait(60)
    return to_markdown(summarise(raw, top=20), f"logging {k}: {r.rps:,.0f} req/s under py-spy")


if __name__ == "__main__":
    main()
