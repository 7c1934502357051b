"""The gateway against the bare stack, in one run: ``python -m benchmarks.gateway``.

Run by hand (or in a separate CI job), never as a timed unit test. It loads 100,000 units x
100 items for two model versions into a dedicated Postgres schema (``abgate batch load``),
seeds the reference app's keys in a dedicated Redis database, starts every server (gateways
with ``abgate serve``: uvicorn, uvloop, httptools, one worker, archive logging on; the bare
reference app of benchmarks/gateway/ref_app.py; its asyncpg twin; Feast's feature server), drives each
with wrk, case after case, round after round (so drifts of a shared machine hit all cases
alike), profiles the gateway with py-spy, prints the table and ratios, and cleans up.

Needs: wrk (apt-get install wrk), py-spy (pip install py-spy) for --profile, Postgres and
Redis (ABGATE_BENCH_POSTGRES_DSN / --pg-dsn, --redis-url). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import orjson

from benchmarks.gateway import data, feast_peer
from benchmarks.gateway.profile import summarise, to_markdown
from benchmarks.gateway.servers import Server, free_port, warm
from benchmarks.gateway.wrk import WrkResult, run_wrk
from loadtests import LoadResult, Scenario, run, run_open_loop

HERE = Path(__file__).parent
ROOT = HERE.parents[1]  # the clone: the reference apps are imported from it, not installed
POST_LUA = HERE / "lua" / "post.lua"
UNITS_LUA = HERE / "lua" / "units.lua"
FEAST_LUA = HERE / "lua" / "feast.lua"
GW_PREFIX = "abgate-loadbench:"
GW_COLD_PREFIX = "abgate-loadbench-cold:"
HOT_UNITS = 1000


@dataclass
class Case:
    """One load configuration: a server, a wrk script and its environment."""

    name: str
    server: str
    script: Path
    env: dict[str, str] = field(default_factory=dict)
    cold: bool = False  # flush the cold gateway's Redis keys before each run
    results: list[WrkResult] = field(default_factory=list)

    def mean(self, attr: str) -> float:
        """Mean of one measure over the rounds."""
        return sum(getattr(r, attr) for r in self.results) / len(self.results)


def cases(units: int) -> list[Case]:
    """Every case, in the order of one round."""
    seq = {"WRK_MODE": "sequential", "WRK_UNITS": str(units)}
    hot = {"WRK_UNITS": str(HOT_UNITS)}
    ex = {"WRK_EXCLUSIONS": "500", "WRK_UNITS": str(units)}
    return [
        Case("reference (Redis)", "ref", POST_LUA),
        Case("gateway, Redis hit", "gw", POST_LUA),
        Case("Feast feature server", "feast", FEAST_LUA, {"WRK_UNITS": str(units)}),
        Case(
            "gateway, no experiment (no exposure log)",
            "gw",
            POST_LUA,
            {"WRK_SURFACE": "home_nolog"},
        ),
        Case("reference, 1,000 hot units", "ref", UNITS_LUA, hot),
        Case("gateway, in-process cache, 1,000 hot units", "gw-local", UNITS_LUA, hot),
        Case("reference, asyncpg PK SELECT (cold walk)", "ref-pg", UNITS_LUA, seq),
        Case("gateway, cold cache (Postgres path)", "gw-cold", UNITS_LUA, seq, cold=True),
        Case("reference, 500 exclusions", "ref", UNITS_LUA, ex),
        Case("gateway, 500 exclusions", "gw", UNITS_LUA, ex),
    ]


# (title, case, baseline case, goal on the req/s ratio, goal on the p99 ratio)
COMPARISONS = [
    ("Redis-hit path", "gateway, Redis hit", "reference (Redis)", ">= 0.9", "<= 1.2"),
    (
        "In-process cache, hot units",
        "gateway, in-process cache, 1,000 hot units",
        "reference, 1,000 hot units",
        ">= 2",
        "",
    ),
    (
        "Postgres path (cold)",
        "gateway, cold cache (Postgres path)",
        "reference, asyncpg PK SELECT (cold walk)",
        ">= 0.8",
        "",
    ),
    (
        "Exposure logging on / off",
        "gateway, Redis hit",
        "gateway, no experiment (no exposure log)",
        ">= 0.95",
        "",
    ),
    ("500 exclusions", "gateway, 500 exclusions", "reference, 500 exclusions", "", ""),
    ("Gateway / Feast", "gateway, Redis hit", "Feast feature server", "> 1", ""),
]


def build_servers(args: argparse.Namespace, config_dir: Path, work: Path) -> dict[str, Server]:
    """Every server of the run (not started)."""
    py = sys.executable
    abgate = str(Path(py).parent / "abgate")
    gw_env = {
        "ABGATE_POSTGRES_DSN": args.pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": args.schema,
        "ABGATE_REDIS_URL": args.redis_url,
        "ABGATE_REDIS_PREFIX": GW_PREFIX,
        "ABGATE_EXPERIMENTS_DIR": str(config_dir),
        "ABGATE_ARCHIVE_DIR": str(work / "archive"),
        "ABGATE_LOCAL_CACHE_SIZE": "0",
    }
    uvicorn = [py, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    uvicorn += ["--app-dir", str(ROOT)]  # the reference apps live in the clone, not the wheel
    servers = {
        "gw": Server("gw", [abgate, "serve"], dict(gw_env), free_port()),
        "gw-local": Server(
            "gw-local",
            [abgate, "serve"],
            {**gw_env, "ABGATE_LOCAL_CACHE_SIZE": str(HOT_UNITS * 4)},
            free_port(),
        ),
        "gw-cold": Server(
            "gw-cold",
            [abgate, "serve"],
            {**gw_env, "ABGATE_REDIS_PREFIX": GW_COLD_PREFIX},
            free_port(),
        ),
        "ref": Server("ref", [], {"REF_REDIS_URL": args.redis_url}, free_port()),
        "ref-pg": Server(
            "ref-pg",
            [],
            {
                "REF_PG_DSN": args.pg_dsn,
                "REF_PG_SCHEMA": args.schema,
                "REF_PG_MODEL": data.MODEL,
            },
            free_port(),
        ),
    }
    for name in ("gw", "gw-local", "gw-cold"):
        servers[name].env["ABGATE_PORT"] = str(servers[name].port)
    servers["ref"].cmd = [
        *uvicorn,
        "--factory",
        "benchmarks.gateway.ref_app:create_app",
        "--port",
        str(servers["ref"].port),
    ]
    servers["ref-pg"].cmd = [
        *uvicorn,
        "--factory",
        "benchmarks.gateway.ref_pg_app:create_app",
        "--port",
        str(servers["ref-pg"].port),
    ]
    return servers


def prepare(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """Result files, loaded into Postgres (unless already there), and the reference's keys."""
    t = time.monotonic()
    files = data.results_files(work, args.units, args.items)
    if not run(_loaded(args)):
        run(_drop_schema(args.pg_dsn, args.schema))  # a half-done earlier load: start over
        data.load_results(files, args.pg_dsn, args.schema)
    n = data.seed_reference(files, args.redis_url)
    say(
        f"data ready: {args.units} units x {args.items} items x 2 versions, {n} reference keys "
        f"({time.monotonic() - t:.0f} s)"
    )
    return files


async def _loaded(args: argparse.Namespace) -> bool:
    conn = await asyncpg.connect(args.pg_dsn)
    try:
        rows = await conn.fetch(
            f"SELECT version, unit_count FROM {args.schema}.model_versions WHERE model = $1",
            data.MODEL,
        )
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()
    return sorted((r["version"], r["unit_count"]) for r in rows) == [
        (v, args.units) for v in data.VERSIONS
    ]


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def profile(server: Server, case: Case, seconds: float, out: Path) -> str:
    """py-spy the server while wrk runs ``case``; the summary as markdown."""
    raw = out / f"profile-{server.name}.txt"
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "-p", str(server.pid), "-d", str(int(seconds)), "-r", "250"]
    proc = subprocess.Popen(
        [*cmd, "-f", "raw", "-o", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    result = run_wrk(server.url, case.script, duration=seconds, env=case.env)
    proc.wait(60)
    title = f"{case.name}: {result.rps:,.0f} req/s under py-spy"
    return to_markdown(summarise(raw, top=15), title)


def open_loop(active: dict[str, Server], args: argparse.Namespace) -> str:
    """The reference and the gateway at the same arrival rate, open loop, alternating: latency
    as users see it (queueing included), which wrk's closed loop hides."""
    lines = [
        f"Open loop (abgate loadtest) at {args.open_rate:g} req/s due, post.lua's mix, "
        f"{args.duration:g} s each, {args.rounds} alternating rounds.",
        "",
        "| server | round | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | failed (kind) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    scenario = Scenario(units=args.units)
    for rnd in range(args.rounds):
        for name in ("ref", "gw"):
            r = run(
                run_open_loop(
                    active[name].url, scenario, rate=args.open_rate, duration=args.duration,
                    warmup=2.0, concurrency=256,
                )
            )  # fmt: skip
            lat = r.latency_ms
            lines.append(
                f"| {name} | {rnd + 1} | {r.throughput:,.0f} | {lat['p50']:.2f} | "
                f"{lat['p90']:.2f} | {lat['p99']:.2f} | {lat['p99.9']:.2f} | {lat['max']:.2f} | "
                f"{r.failed} {_kinds(r)} |"
            )
            say(f"open loop round {rnd + 1} {name}: p99 {lat['p99']:.2f} ms")
    return "\n".join(lines)


def _kinds(r: LoadResult) -> str:
    kinds = {**{str(k): n for k, n in r.statuses.items() if not 200 <= k < 300}, **r.errors}
    return "(" + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) + ")" if kinds else ""


def say(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def report(all_cases: list[Case], rss: dict[str, float], args: argparse.Namespace) -> str:
    """The markdown tables: cases, then ratios."""
    lines = [
        f"wrk -t1 -c32 -d{args.duration:g}s, {args.rounds} alternating rounds "
        f"(means over rounds), {args.units:,} units x {args.items} items x 2 versions.",
        "",
        "| case | req/s | p50 ms | p99 ms | non-2xx | req/s per round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in all_cases:
        if not c.results:
            continue
        per = " / ".join(f"{r.rps:,.0f}" for r in c.results)
        bad = sum(r.non_2xx + r.socket_errors for r in c.results)
        lines.append(
            f"| {c.name} | {c.mean('rps'):,.0f} | {c.mean('p50_ms'):.2f} | "
            f"{c.mean('p99_ms'):.2f} | {bad} | {per} |"
        )
    lines += [
        "",
        "| comparison | req/s ratio | goal | p99 ratio | goal | req/s ratio per round |",
        "|---|---:|---|---:|---|---|",
    ]
    by_name = {c.name: c for c in all_cases}
    for title, a, b, goal_rps, goal_p99 in COMPARISONS:
        ca, cb = by_name.get(a), by_name.get(b)
        if ca is None or cb is None or not ca.results or not cb.results:
            continue
        per = " / ".join(
            f"{x.rps / y.rps:.2f}" for x, y in zip(ca.results, cb.results, strict=False)
        )
        lines.append(
            f"| {title} | {ca.mean('rps') / cb.mean('rps'):.2f} | {goal_rps} | "
            f"{ca.mean('p99_ms') / cb.mean('p99_ms'):.2f} | {goal_p99} | {per} |"
        )
    lines += [
        "",
        "Resident memory after the run: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in rss.items()),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data.add_data_options(
        p,
        units=100_000,
        schema="abgate_loadbench",
        redis_db=13,
        work=Path("/tmp/abgate-loadbench"),
    )
    p.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--feast-venv", type=Path, default=Path("/tmp/feastpeer"))
    p.add_argument("--no-feast", action="store_true")
    p.add_argument("--profile", action="store_true", help="py-spy the gateway cases")
    p.add_argument("--keep", action="store_true", help="keep the schema and keys for a re-run")
    p.add_argument("--only", default="", help="comma-separated server names to run")
    p.add_argument(
        "--open-rate", type=float, default=0.0, help="also run ref and gw open loop at this rate"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Prepare, start, measure, report, clean up."""
    args = parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    config_dir = work / "experiments.d"
    data.write_config(config_dir)
    files = prepare(args, work)
    servers = build_servers(args, config_dir, work)
    if not args.no_feast:
        t = time.monotonic()
        bin_dir = feast_peer.ensure_venv(args.feast_venv)
        hostport = args.redis_url.split("//", 1)[1].rsplit("/", 1)[0]
        db = int(args.redis_url.rsplit("/", 1)[1])
        feast_peer.setup_repo(bin_dir, work / "feast", files["1"], hostport, db)
        port = free_port()
        servers["feast"] = Server(
            "feast",
            feast_peer.serve_command(bin_dir, port),
            {},
            port,
            path="/get-online-features",
            cwd=work / "feast",
        )
        say(f"feast repository materialized ({time.monotonic() - t:.0f} s)")
    only = set(filter(None, args.only.split(",")))
    active = {k: s for k, s in servers.items() if not only or k in only}
    all_cases = [c for c in cases(args.units) if c.server in active]
    probe = b'{"surface":"home_top","unit_id":"u1","limit":10}'
    feast_probe = b'{"features":["recs:items"],"entities":{"user_id":["u1"]}}'
    try:
        for s in active.values():
            s.start(work / "logs")
        for s in active.values():
            s.wait_ready(feast_probe if s.name == "feast" else probe)
        say("servers ready: " + ", ".join(f"{s.name}:{s.port}" for s in active.values()))
        if "gw" in active:
            t = time.monotonic()
            data.warm_cache(args.pg_dsn, args.schema, args.redis_url, GW_PREFIX)
            say(f"abgate batch warm: both versions in Redis ({time.monotonic() - t:.0f} s)")
        if "gw-local" in active:
            warm(active["gw-local"].url, "home_top", range(HOT_UNITS))
        for c in all_cases:  # one short unmeasured run each: connection pools, code paths
            _flush_cold(args, c)
            run_wrk(active[c.server].url, c.script, duration=3, env=c.env)
        for rnd in range(args.rounds):
            for c in all_cases:
                _flush_cold(args, c)
                r = run_wrk(active[c.server].url, c.script, duration=args.duration, env=c.env)
                c.results.append(r)
                say(f"round {rnd + 1} {c.name}: {r.rps:,.0f} req/s, p99 {r.p99_ms:.2f} ms")
        rss = {k: s.rss_mb() for k, s in active.items()}
        text = report(all_cases, rss, args)
        if args.open_rate and {"ref", "gw"} <= active.keys():
            text += "\n\n" + open_loop(active, args)
        if args.profile:
            for c in all_cases:
                if c.server.startswith("gw") and c.name != "gateway, 500 exclusions":
                    _flush_cold(args, c)
                    text += "\n\n" + profile(active[c.server], c, args.duration, work)
    finally:
        for s in active.values():
            s.stop()
        if not args.keep:
            run(_drop_schema(args.pg_dsn, args.schema))
            n = data.delete_keys(
                args.redis_url,
                GW_PREFIX + "*",
                GW_COLD_PREFIX + "*",
                "ref:*",
                f"*{feast_peer.PROJECT}",
            )
            say(f"cleaned up: schema {args.schema} dropped, {n} Redis keys deleted")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (work / f"results-{stamp}.md").write_text(text + "\n")
    (work / f"results-{stamp}.json").write_bytes(
        orjson.dumps(
            {c.name: [dataclasses.asdict(r) for r in c.results] for c in all_cases} | {"rss": rss},
            option=orjson.OPT_INDENT_2,
        )
    )
    print(text)
    say(f"written to {work}/results-{stamp}.md")


def _flush_cold(args: argparse.Namespace, case: Case) -> None:
    if case.cold:
        data.delete_keys(args.redis_url, GW_COLD_PREFIX + "*")


if __name__ == "__main__":
    main()
