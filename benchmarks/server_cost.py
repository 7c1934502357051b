"""The server's own cost, exposure logging's cost and open-loop capacity: ``python -m benchmarks.server_cost``.

Run by hand, never as a timed test (docs/benchmarks.md, "Server cost and capacity"). Same data
as ``python -m benchmarks.gateway`` (100,000 units x 100 items x 2 versions, loaded with
``abgate batch load`` and warmed into Redis), then three phases, each measured within one run:

1. **servers**: the same apps on uvicorn (uvloop, httptools) and on Granian (ASGI, uvloop),
   wrk closed loop, cases alternating and their order reversed every other round:
   the gateway (``abgate serve`` on uvicorn; ``abgate.commands.serve:worker_app`` on Granian,
   the same app), the reference app (benchmarks/gateway/ref_app.py), the bare Starlette
   ``/hello`` (benchmarks/gateway/hello_app.py, the floor of the stack; on uvicorn both on plain
   uvicorn and on ``abgate serve``'s server, gateway/server.py), the gateway's in-process hot
   path and its no-experiment surface (no exposure logged). ``--compare-tree`` adds the hot
   path and the floor on abgate's server run from another clone (before/after). Each case also
   reports the server's CPU time per request (user + system of its process group, from
   /proc), which a shared machine disturbs less than throughput.
2. **capacity**: ``abgate loadtest``'s open loop (loadtests.run_open_loop) on a ladder of
   rates, the gateway and the reference alternating at each rate: the highest rate each
   sustains with p99 <= ``--slo-ms``, no failed request and >= 97% of the rate answered
   (a step that misses is retried once: a shared machine has bursts).

Needs wrk, granian (``pip install granian``), Postgres and Redis. Loads its own schema
(``--schema``, dropped at the end unless ``--keep``) and uses Redis database ``--redis-url``
(default 12; only its key patterns are deleted).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from benchmarks.gateway import data
from benchmarks.gateway.__main__ import _drop_schema, _kinds, _loaded
from benchmarks.gateway.servers import Server, free_port, warm
from benchmarks.gateway.wrk import WrkResult, run_wrk
from loadtests import LoadResult, Scenario, run, run_open_loop

ROOT = Path(__file__).parents[1]
LUA = ROOT / "benchmarks" / "gateway" / "lua"
PREFIX = "abgate-srvbench:"
HOT_UNITS = 1000
PROBE = b'{"surface":"home_top","unit_id":"u1","limit":10}'
SERVERS = ("uvicorn", "granian")


def say(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average() -> str:
    """The machine's 1-minute load average (other helpers' work shows here)."""
    return Path("/proc/loadavg").read_text().split()[0]


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in the process group ``pgid``."""
    tick: int = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process exited meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


@dataclass
class Case:
    """One wrk configuration on one server process."""

    name: str
    app: str  # gw, gw-local, ref, hello, hello-gw (hello on abgate's server)
    server: str  # uvicorn, granian, or uvicorn+compare (uvicorn from --compare-tree)
    script: Path
    env: dict[str, str] = field(default_factory=dict)
    results: list[WrkResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # server CPU per request, per round

    @property
    def key(self) -> str:
        """The server process of this case."""
        return f"{self.app}@{self.server}"

    def mean(self, attr: str) -> float:
        """Mean over the rounds of a WrkResult attribute."""
        return sum(getattr(r, attr) for r in self.results) / len(self.results)


HOT = "gateway, in-process cache, 1,000 hot units"
FLOOR_GW = "bare Starlette /hello on abgate's server (floor)"


def cases(servers: list[str], compare: bool = False) -> list[Case]:
    """Every case of one round, servers adjacent so each pair meets the same load."""
    hot = {"WRK_UNITS": str(HOT_UNITS)}
    apps = [
        ("reference (Redis)", "ref", LUA / "post.lua", {}),
        ("gateway, Redis hit, exposure logged", "gw", LUA / "post.lua", {}),
        ("gateway, no experiment (no exposure)", "gw", LUA / "post.lua", {"WRK_SURFACE": "home_nolog"}),
        (HOT, "gw-local", LUA / "units.lua", hot),
        ("bare Starlette /hello (floor)", "hello", LUA / "post.lua", {}),
    ]  # fmt: skip
    out = [Case(f"{n} [{s}]", app, s, script, env) for n, app, script, env in apps for s in servers]
    if "uvicorn" in servers:
        out.append(Case(f"{FLOOR_GW} [uvicorn]", "hello-gw", "uvicorn", LUA / "post.lua"))
        if compare:  # before/after pairs, adjacent
            at = [c.app for c in out].index("gw-local")
            out.insert(at + 1, Case(f"{HOT} [uvicorn, compare tree]", "gw-local", "uvicorn+compare", LUA / "units.lua", hot))  # fmt: skip
            out.append(Case(f"{FLOOR_GW} [uvicorn, compare tree]", "hello-gw", "uvicorn+compare", LUA / "post.lua"))  # fmt: skip
    return out


def build_servers(args: argparse.Namespace, config_dir: Path, work: Path) -> dict[str, Server]:
    """Every server process (not started): each app on each server."""
    bin_dir = Path(sys.executable).parent
    gw_env = {
        "ABGATE_POSTGRES_DSN": args.pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": args.schema,
        "ABGATE_REDIS_URL": args.redis_url,
        "ABGATE_REDIS_PREFIX": PREFIX,
        "ABGATE_EXPERIMENTS_DIR": str(config_dir),
        "ABGATE_ARCHIVE_DIR": str(work / "archive"),
        "ABGATE_SPOOL_DIR": str(work / "spool"),
        "ABGATE_LOCAL_CACHE_SIZE": "0",
    }
    envs = {
        "gw": gw_env,
        "gw-local": {**gw_env, "ABGATE_LOCAL_CACHE_SIZE": str(HOT_UNITS * 4)},
        "ref": {"REF_REDIS_URL": args.redis_url},
        "hello": {},
        "hello-gw": {},
    }
    factories = {
        "ref": "benchmarks.gateway.ref_app:create_app",
        "hello": "benchmarks.gateway.hello_app:create_app",
        "gw": "abgate.commands.serve:worker_app",
        "gw-local": "abgate.commands.serve:worker_app",
    }
    servers: dict[str, Server] = {}
    kinds = [(app, srv) for app in envs for srv in args.servers]
    if args.compare_tree is not None and "uvicorn" in args.servers:
        kinds += [("gw-local", "uvicorn+compare"), ("hello-gw", "uvicorn+compare")]
    for app, srv in kinds:
        if app == "hello-gw" and srv == "granian":
            continue
        env = envs[app]
        tree = args.compare_tree if srv == "uvicorn+compare" else ROOT
        port = free_port()
        path = "/hello" if app.startswith("hello") else "/v1/recommendations"
        if srv.startswith("uvicorn") and app.startswith("gw"):
            cmd = [sys.executable, "-m", "abgate", "serve", "--port", str(port)]
        elif app == "hello-gw":
            cmd = [sys.executable, "-m", "benchmarks.gateway.hello_app", "--port", str(port)]
        elif srv == "uvicorn":
            cmd = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools"]
            cmd += ["--no-access-log", "--app-dir", str(ROOT), "--factory", factories[app]]
            cmd += ["--port", str(port)]
        else:
            cmd = [str(bin_dir / "granian"), "--interface", "asgi", "--loop", "uvloop"]
            cmd += ["--no-ws", "--http", "1", "--log-level", "warning", "--working-dir"]
            cmd += [str(ROOT), "--factory", factories[app], "--port", str(port)]
        servers[f"{app}@{srv}"] = Server(
            f"{app}@{srv}", cmd, {**env, "PYTHONPATH": str(tree)}, port, path=path, cwd=tree
        )
    return servers


def run_servers_phase(
    args: argparse.Namespace, servers: dict[str, Server], all_cases: list[Case]
) -> None:
    """wrk on every case, rounds alternating the order (ABBA) against drift."""
    for c in all_cases:  # one short unmeasured run each: pools, code paths, caches
        run_wrk(servers[c.key].url, c.script, duration=2, env=c.env)
    for rnd in range(args.rounds):
        order = all_cases if rnd % 2 == 0 else list(reversed(all_cases))
        for c in order:
            server = servers[c.key]
            cpu0 = group_cpu_seconds(server.pid)
            r = run_wrk(server.url, c.script, duration=args.duration, env=c.env)
            cpu = group_cpu_seconds(server.pid) - cpu0
            c.results.append(r)
            c.cpu_us.append(cpu / max(1, r.requests) * 1e6)
            say(
                f"round {rnd + 1} {c.name}: {r.rps:,.0f} req/s, p99 {r.p99_ms:.2f} ms, "
                f"{c.cpu_us[-1]:.0f} µs CPU/req, load {load_average()}"
            )


def servers_report(all_cases: list[Case], args: argparse.Namespace) -> str:
    """Markdown: the cases, then the ratios the issue asks for."""
    lines = [
        f"wrk -t1 -c32 -d{args.duration:g}s, {args.rounds} rounds (order reversed every other "
        "round; means over rounds). CPU: the server's process group, user + system, per request.",
        "",
        "| case | req/s | p50 ms | p99 ms | CPU µs/req | non-2xx | req/s per round |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in all_cases:
        if not c.results:
            continue
        bad = sum(r.non_2xx + r.socket_errors for r in c.results)
        per = " / ".join(f"{r.rps:,.0f}" for r in c.results)
        cpu = sum(c.cpu_us) / len(c.cpu_us)
        lines.append(
            f"| {c.name} | {c.mean('rps'):,.0f} | {c.mean('p50_ms'):.2f} | "
            f"{c.mean('p99_ms'):.2f} | {cpu:.0f} | {bad} | {per} |"
        )
    by = {(c.app, c.server, c.env.get("WRK_SURFACE", "")): c for c in all_cases}
    rows: list[tuple[str, Case | None, Case | None, str]] = []
    for srv in args.servers:
        rows += [
            (
                f"logging on / off [{srv}]",
                by.get(("gw", srv, "")),
                by.get(("gw", srv, "home_nolog")),
                ">= 0.95",
            ),
            (
                f"in-process hot path / floor [{srv}]",
                by.get(("gw-local", srv, "")),
                by.get(("hello", srv, "")),
                ">= 0.5",
            ),
            (
                f"in-process hot path / floor on abgate's server [{srv}]",
                by.get(("gw-local", srv, "")),
                by.get(("hello-gw", srv, "")),
                ">= 0.5",
            ),
            (
                f"in-process hot path / floor on abgate's server [{srv}, compare tree]",
                by.get(("gw-local", f"{srv}+compare", "")),
                by.get(("hello-gw", f"{srv}+compare", "")),
                ">= 0.5",
            ),
            (
                f"in-process hot path: this tree / compare tree [{srv}]",
                by.get(("gw-local", srv, "")),
                by.get(("gw-local", f"{srv}+compare", "")),
                "",
            ),
            (
                f"floor on abgate's server: this tree / compare tree [{srv}]",
                by.get(("hello-gw", srv, "")),
                by.get(("hello-gw", f"{srv}+compare", "")),
                "",
            ),
            (f"gateway / reference [{srv}]", by.get(("gw", srv, "")), by.get(("ref", srv, "")), ""),
        ]
    if len(args.servers) == 2:
        a, b = args.servers[1], args.servers[0]
        for app, surface, label in (
            ("gw", "", "gateway"),
            ("gw-local", "", "gateway, in-process"),
            ("ref", "", "reference"),
            ("hello", "", "/hello floor"),
        ):
            rows.append(
                (f"{label}: {a} / {b}", by.get((app, a, surface)), by.get((app, b, surface)), "")
            )
    lines += [
        "",
        "| comparison | req/s ratio | goal | p99 ratio | CPU/req ratio | req/s ratio per round |",
        "|---|---:|---|---:|---:|---|",
    ]
    for title, x, y, goal in rows:
        if x is None or y is None or not x.results or not y.results:
            continue
        per = " / ".join(f"{p.rps / q.rps:.2f}" for p, q in zip(x.results, y.results, strict=True))
        cpu = (sum(x.cpu_us) / len(x.cpu_us)) / (sum(y.cpu_us) / len(y.cpu_us))
        lines.append(
            f"| {title} | {x.mean('rps') / y.mean('rps'):.2f} | {goal} | "
            f"{x.mean('p99_ms') / y.mean('p99_ms'):.2f} | {cpu:.2f} | {per} |"
        )
    return "\n".join(lines)


@dataclass
class Step:
    """One open-loop run at one rate."""

    server: str
    rate: float
    attempt: int
    result: LoadResult

    @property
    def p99(self) -> float:
        """Latency p99 in ms, from each request's due time."""
        return self.result.latency_ms.get("p99", float("inf"))

    def passed(self, slo_ms: float) -> bool:
        """p99 within the SLO, nothing failed, and the rate answered."""
        r = self.result
        failed = r.scheduled - r.ok
        return self.p99 <= slo_ms and failed == 0 and r.throughput >= 0.97 * self.rate


def run_capacity_phase(
    args: argparse.Namespace, servers: dict[str, Server]
) -> tuple[str, dict[str, float]]:
    """The rate ladder, the servers alternating at each rate; markdown and the best rates."""
    names = [n for n in args.capacity_servers if n in servers]
    scenario = Scenario(units=args.units)
    best: dict[str, float] = dict.fromkeys(names, 0.0)
    alive = list(names)
    steps: list[Step] = []
    rate = args.cap_start
    while alive and rate <= args.cap_max:
        for name in list(alive):
            for attempt in (1, 2):
                r = run(
                    run_open_loop(
                        servers[name].url, scenario, rate=rate, duration=args.cap_duration,
                        warmup=1.0, concurrency=256,
                    )
                )  # fmt: skip
                step = Step(name, rate, attempt, r)
                steps.append(step)
                ok = step.passed(args.slo_ms)
                say(
                    f"capacity {name} at {rate:,.0f}/s (try {attempt}): p99 {step.p99:.1f} ms, "
                    f"{r.throughput:,.0f} ok/s, send-lag p99 {r.send_lag_ms.get('p99', 0):.1f} ms "
                    f"-> {'pass' if ok else 'miss'}; load {load_average()}"
                )
                if ok:
                    best[name] = rate
                    break
            else:
                alive.remove(name)
        rate = round(rate * args.cap_factor, -1)
    lines = [
        f"Open loop (loadtests.run_open_loop, post.lua's mix, 256 connections), "
        f"{args.cap_duration:g} s per step after 1 s of warm-up, rates x{args.cap_factor:g} from "
        f"{args.cap_start:g}/s; a step passes with p99 <= {args.slo_ms:g} ms, nothing failed and "
        ">= 97% of the rate answered (one retry).",
        "",
        "| server | highest rate passed (/s) |",
        "|---|---:|",
        *(f"| {n} | {best[n]:,.0f} |" for n in names),
        "",
        "| server | rate /s | try | ok/s | p50 ms | p99 ms | max ms | failed (kind) | send-lag p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for s in steps:
        lat = s.result.latency_ms
        lines.append(
            f"| {s.server} | {s.rate:,.0f} | {s.attempt} | {s.result.throughput:,.0f} | "
            f"{lat.get('p50', 0):.2f} | {s.p99:.2f} | {lat.get('max', 0):.2f} | "
            f"{s.result.scheduled - s.result.ok} {_kinds(s.result)} | "
            f"{s.result.send_lag_ms.get('p99', 0):.2f} |"
        )
    return "\n".join(lines), best


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.server_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data.add_data_options(
        p, units=100_000, schema="abgate_srvbench", work=Path("/tmp/abgate-srvbench")
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep schema and keys for a re-run")
    p.add_argument("--servers", default="uvicorn,granian", help="comma-separated: uvicorn, granian")
    p.add_argument("--phases", default="servers,capacity", help="servers, capacity")
    p.add_argument(
        "--compare-tree",
        type=Path,
        help="another clone (e.g. main before a change): its in-process hot path and its floor "
        "on abgate's server run too, next to this tree's",
    )
    p.add_argument(
        "--capacity-servers",
        default="ref@uvicorn,gw@uvicorn",
        help="server processes for the capacity ladder (APP@SERVER)",
    )
    p.add_argument("--slo-ms", type=float, default=50.0)
    p.add_argument("--cap-start", type=float, default=1000.0, help="first rate (req/s)")
    p.add_argument("--cap-factor", type=float, default=1.15, help="rate step factor")
    p.add_argument("--cap-max", type=float, default=20000.0)
    p.add_argument("--cap-duration", type=float, default=5.0, help="seconds per step")
    args = p.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    if unknown := set(args.servers) - set(SERVERS):
        p.error(f"--servers: unknown {', '.join(sorted(unknown))} (known: {', '.join(SERVERS)})")
    args.phases = set(filter(None, args.phases.split(",")))
    args.capacity_servers = [s for s in args.capacity_servers.split(",") if s]
    return args


def main(argv: list[str] | None = None) -> None:
    """Prepare, start, measure, report, clean up."""
    args = parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    config_dir = work / "experiments.d"
    data.write_config(config_dir)
    files = data.results_files(work, args.units, args.items)
    if not run(_loaded(args)):
        run(_drop_schema(args.pg_dsn, args.schema))  # a half-done earlier load: start over
        data.load_results(files, args.pg_dsn, args.schema)
    data.seed_reference(files, args.redis_url)
    servers = build_servers(args, config_dir, work)
    all_cases = cases(args.servers, compare=args.compare_tree is not None)
    text = [f"Load average at start: {load_average()}"]
    try:
        for s in servers.values():
            s.start(work / "logs")
        for s in servers.values():
            s.wait_ready(b"{}" if s.name.startswith("hello") else PROBE)
        say("servers ready: " + ", ".join(f"{k}:{s.port}" for k, s in servers.items()))
        data.warm_cache(args.pg_dsn, args.schema, args.redis_url, PREFIX)
        for key, server in servers.items():
            if key.startswith("gw-local@"):
                warm(server.url, "home_top", range(HOT_UNITS))
        if "servers" in args.phases:
            run_servers_phase(args, servers, all_cases)
            text.append(servers_report(all_cases, args))
        if "capacity" in args.phases:
            cap, _ = run_capacity_phase(args, servers)
            text.append(cap)
        text.append(f"Load average at the end: {load_average()}")
    finally:
        for s in servers.values():
            s.stop()
        if not args.keep:
            run(_drop_schema(args.pg_dsn, args.schema))
            data.delete_keys(args.redis_url, PREFIX + "*", "ref:*")
    out = "\n\n".join(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (work / f"results-{stamp}.md").write_text(out + "\n")
    (work / f"results-{stamp}.json").write_bytes(
        orjson.dumps(
            {c.name: {"wrk": c.results, "cpu_us": c.cpu_us} for c in all_cases},
            option=orjson.OPT_INDENT_2,
        )
    )
    print(out)
    say(f"written to {work}/results-{stamp}.md")


if __name__ == "__main__":
    main()
