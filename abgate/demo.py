"""``abgate demo``: the whole loop on one machine, with real servers and a real gateway process.

1. Postgres and Redis: the ones named by ABGATE_POSTGRES_DSN / ABGATE_REDIS_URL, or embedded
   servers in the data folder. The demo uses its own schema and key prefix and resets them.
2. Precomputed results for two versions of ``home_recs`` (the champion and a challenger) and
   one of ``cart_recs``, each with a default list.
3. An experiment on ``home_top``: control = ``models:/home_recs@champion`` (pinned to v1 when
   the gateway first serves it), treatment = v2, starting at 80/20.
4. ``abgate serve`` as a child process; simulated users ask for results (some with exclusions,
   some unknown, some on a surface without an experiment) and report purchases and clicks.
   Treatment users convert more often, by a known, printed amount. Half-way, the experiment is
   ramped to 50/50 (a gateway restart with the new file): a second allocation phase.
5. A summary, a clean SIGTERM shutdown, the archive of exposures left on disk, and the report
   (per-phase SRM, estimates stratified by phase, a verdict).
6. The loop closes: ``abgate registry promote home_recs champion 2 --experiment …`` promotes the
   treatment's version on that evidence (tags in a local sqlite MLflow registry), and
   ``abgate registry lineage models:/home_recs/2`` prints the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis
from rich.console import Console
from rich.table import Table

from abgate.embedded import free_port, resolve_services
from batch import DEFAULT_UNIT, load_results
from experiments.settings import Settings
from experiments.store import create_pool

SCHEMA = "abgate_demo"
PREFIX = "abgate-demo:"
EXPERIMENT_KEY = "home-recs-demo"
BASE_CONVERSION = 0.10
TREATMENT_CONVERSION = 0.12
CATALOG = 5_000
ITEMS_PER_UNIT = 50

SURFACES_YAML = """\
surfaces:
  - {name: home_top, default_model: "models:/home_recs@champion", max_limit: 50}
  - {name: cart_upsell, default_model: "models:/cart_recs/1", max_limit: 20}
"""

EXPERIMENT_YAML = f"""\
key: {EXPERIMENT_KEY}
surface: home_top
status: running
description: Does the v2 ranker sell more than the champion?
variants:
  - {{key: control, weight: 80, model: "models:/home_recs@champion"}}
  - {{key: treatment, weight: 20, model: "models:/home_recs/2"}}
metrics:
  - {{name: conversion, kind: proportion, outcome: purchase, role: primary}}
  - {{name: revenue, kind: mean, outcome: purchase}}
  - {{name: clicks_per_exposure, kind: ratio, numerator: click, denominator: exposures}}
"""


@dataclass
class Tally:
    """What the simulated clients saw."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    requests_by_variant: Counter[str] = field(default_factory=Counter)
    units_by_variant: dict[str, set[str]] = field(default_factory=dict)
    conversions: Counter[str] = field(default_factory=Counter)
    events: int = 0
    samples: list[tuple[dict[str, object], dict[str, Any]]] = field(default_factory=list)


def _ranked(rng: random.Random, n: int) -> list[dict[str, object]]:
    ids = rng.sample(range(CATALOG), n)
    return [{"id": f"sku-{i}", "score": round(1.0 - k / n, 4)} for k, i in enumerate(ids)]


def _results(seed: int, users: int) -> list[tuple[str, list[dict[str, object]]]]:
    rng = random.Random(seed)
    rows = [(f"u{i}", _ranked(rng, ITEMS_PER_UNIT)) for i in range(users)]
    rows.append((DEFAULT_UNIT, _ranked(rng, ITEMS_PER_UNIT)))
    return rows


async def _reset_and_load(dsn: str, redis_url: str, users: int, console: Console) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    finally:
        await conn.close()
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=PREFIX + "*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
    finally:
        await client.aclose()
    pool = await create_pool(dsn, SCHEMA)
    try:
        for model, version, alias, seed, n in (
            ("home_recs", "1", "champion", 1, users),
            ("home_recs", "2", None, 2, users),
            ("cart_recs", "1", None, 3, users // 10),
        ):
            started = time.perf_counter()
            summary = await load_results(
                pool, iter(_results(seed, n)), model, version, source="demo", alias=alias
            )
            took = time.perf_counter() - started
            console.print(
                f"  loaded models:/{model}/{version}: {summary.units:,} units × {ITEMS_PER_UNIT} items"
                f" + default list in {took:.1f} s" + (f"  (alias @{alias})" if alias else "")
            )
    finally:
        await pool.close()


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited during start-up; its log:\n{log.read_text()}"
                )
            try:
                async with client.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)  # the port is not open yet: nothing to await but time
    raise RuntimeError(f"the gateway did not become ready in 60 s; see {log}")


async def _simulate(
    url: str, users: int, traffic_users: int, concurrency: int, seed: int, tally: Tally
) -> Tally:
    rng = random.Random(seed)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in rng.sample(range(users), traffic_users):
        queue.put_nowait(f"u{i}")
    for i in range(traffic_users // 20):  # 5% of visitors are new: no precomputed list
        queue.put_nowait(f"new-{seed}-{i}")

    async def post(
        client: aiohttp.ClientSession, path: str, body: object
    ) -> tuple[int, dict[str, Any]]:
        async with client.post(
            url + path, data=orjson.dumps(body), headers={"content-type": "application/json"}
        ) as r:
            return r.status, orjson.loads(await r.read())

    async def visit(client: aiohttp.ClientSession, unit: str, urng: random.Random) -> None:
        variant = None
        exclude: list[str] = []
        for visit_no in range(urng.choice((1, 1, 2, 3))):
            body: dict[str, object] = {"surface": "home_top", "unit_id": unit, "limit": 10}
            if exclude:
                body["exclude"] = exclude
            started = time.perf_counter()
            status, answer = await post(client, "/v1/recommendations", body)
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[status] += 1
            if status != 200:
                continue
            tally.sources[answer["source"]] += 1
            variant = answer["variant"]
            tally.requests_by_variant[variant] += 1
            tally.units_by_variant.setdefault(variant, set()).add(unit)
            if len(tally.samples) < 3 and (exclude or visit_no == 0):
                tally.samples.append((body, answer))
            # Next time, two of the items shown are "out of stock": the caller excludes them.
            if urng.random() < 0.3:
                exclude = [it["id"] for it in answer["items"][:2]]
        if urng.random() < 0.2:  # some also see the cart surface (no experiment there)
            status, answer = await post(
                client,
                "/v1/recommendations",
                {"surface": "cart_upsell", "unit_id": unit, "limit": 5},
            )
            tally.statuses[status] += 1
            if status == 200:
                tally.sources[str(answer["source"])] += 1
        if variant is None:
            return
        events: list[dict[str, object]] = []
        p = TREATMENT_CONVERSION if variant == "treatment" else BASE_CONVERSION
        if urng.random() < p:
            tally.conversions[variant] += 1
            events.append(
                {
                    "unit_id": unit,
                    "name": "purchase",
                    "value": round(urng.lognormvariate(3.5, 0.6), 2),
                }
            )
        events.extend(
            {"unit_id": unit, "name": "click"} for _ in range(urng.choice((0, 0, 1, 1, 2)))
        )
        if events:
            status, _ = await post(client, "/v1/events", events)
            tally.statuses[status] += 1
            tally.events += len(events)

    async def worker(client: aiohttp.ClientSession) -> None:
        while True:
            try:
                unit = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            # One generator per unit: what a user does does not depend on request interleaving.
            await visit(client, unit, random.Random(f"{seed}:{unit}"))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return tally


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def _print_summary(console: Console, tally: Tally, elapsed: float) -> None:
    for body, answer in tally.samples:
        items = ", ".join(str(it["id"]) for it in answer["items"][:5])
        console.print(
            f"  [bold]{body['unit_id']}[/] excl={body.get('exclude', [])} → {answer['variant']} "
            f"{answer['model']} source={answer['source']}: {items}, …",
            highlight=False,
        )
    total = sum(tally.statuses.values())
    hits, db = tally.sources["cache"], tally.sources["db"]
    table = Table(title="Demo traffic", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("HTTP requests", f"{total:,} in {elapsed:.1f} s ({total / elapsed:,.0f}/s)")
    table.add_row(
        "status codes", ", ".join(f"{k}: {v:,}" for k, v in sorted(tally.statuses.items()))
    )
    for variant in sorted(tally.units_by_variant):
        table.add_row(
            f"variant {variant}",
            f"{len(tally.units_by_variant[variant]):,} units, {tally.requests_by_variant[variant]:,} requests, "
            f"{tally.conversions[variant]:,} purchases",
        )
    table.add_row("sources", ", ".join(f"{k}: {v:,}" for k, v in sorted(tally.sources.items())))
    table.add_row("cache hit ratio (cache / (cache + db))", f"{hits / max(1, hits + db):.1%}")
    ms = [x * 1000 for x in tally.latencies]
    table.add_row(
        "latency p50 / p99 (client side)",
        f"{_percentile(ms, 0.5):.1f} ms / {_percentile(ms, 0.99):.1f} ms",
    )
    table.add_row("outcome events sent", f"{tally.events:,}")
    console.print(table)


def _count_archive(root: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for p in root.rglob("*.json"):
        with p.open("rb") as f:
            for line in f:
                if b'"type":"exposure"' in line:
                    counts["exposure"] += 1
                elif b'"type":"outcome"' in line:
                    counts["outcome"] += 1
    return counts


async def run_demo(
    data_dir: Path, *, users: int, traffic_users: int, concurrency: int, seed: int = 1
) -> int:
    """Run the demo; return the process exit code."""
    # Piped output (CI logs) gets a width that fits the report tables instead of rich's 80.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    settings = Settings()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]abgate demo")
    console.print(
        f"Simulated truth: control converts at {BASE_CONVERSION:.0%}, treatment at {TREATMENT_CONVERSION:.0%} "
        f"(+{TREATMENT_CONVERSION - BASE_CONVERSION:.0%} absolute, "
        f"+{TREATMENT_CONVERSION / BASE_CONVERSION - 1:.0%} relative lift)"
    )
    embedded = not (settings.postgres_dsn and settings.redis_url)
    dsn, redis_url = await asyncio.to_thread(
        resolve_services, settings.postgres_dsn, settings.redis_url, data_dir
    )
    console.print(
        f"[1/6] servers: {'embedded in ' + str(data_dir) if embedded else 'from the environment'}"
    )
    console.print(f"[2/6] loading precomputed results (schema {SCHEMA})")
    await _reset_and_load(dsn, redis_url, users, console)

    conf = data_dir / "experiments.d"
    archive = data_dir / "archive"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.rmtree(archive, ignore_errors=True)
    conf.mkdir(parents=True)
    (conf / "surfaces.yaml").write_text(SURFACES_YAML)
    (conf / f"{EXPERIMENT_KEY}.yaml").write_text(EXPERIMENT_YAML)
    console.print(f"[3/6] experiment {EXPERIMENT_KEY}: {conf / (EXPERIMENT_KEY + '.yaml')}")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ABGATE_POSTGRES_DSN": dsn,
        "ABGATE_POSTGRES_SCHEMA": SCHEMA,
        "ABGATE_REDIS_URL": redis_url,
        "ABGATE_REDIS_PREFIX": PREFIX,
        "ABGATE_EXPERIMENTS_DIR": str(conf),
        "ABGATE_ARCHIVE_DIR": str(archive),
        "ABGATE_HOST": "127.0.0.1",
        "ABGATE_PORT": str(port),
        "ABGATE_LOCAL_CACHE_SIZE": "0",  # show the Redis cache at work
    }
    log = data_dir / "gateway.log"
    log.unlink(missing_ok=True)
    tally = Tally()
    started = time.perf_counter()
    exits = []
    for phase, (weights, seed_of_phase) in enumerate((((80, 20), seed), ((50, 50), seed + 1)), 1):
        if phase == 2:  # the ramp: a new file, picked up by a restarted gateway
            (conf / f"{EXPERIMENT_KEY}.yaml").write_text(
                EXPERIMENT_YAML.replace("weight: 80", "weight: 50").replace(
                    "weight: 20", "weight: 50"
                )
            )
        async with _gateway(url, env, log) as proc:
            listed = await _experiment_listing(url)
            console.print(
                f"[4/6] phase {phase}: gateway on {url} serves {EXPERIMENT_KEY} at "
                f"{weights[0]}/{weights[1]} (phase {listed['phase']}, control pinned to "
                f"v{listed['variants'][0]['pinned']}); traffic from {traffic_users // 2:,} users"
            )
            await _simulate(url, users, traffic_users // 2, concurrency, seed_of_phase, tally)
        exits.append(proc.returncode)
    elapsed = time.perf_counter() - started
    _print_summary(console, tally, elapsed)
    counts = _count_archive(archive)
    console.print(
        f"[5/6] gateway stopped (exit {', '.join(map(str, exits))}); archive {archive}: "
        f"{counts['exposure']:,} exposures, {counts['outcome']:,} outcomes"
    )
    served = sum(tally.requests_by_variant.values())
    if counts["exposure"] != served or counts["outcome"] != tally.events:
        console.print(
            f"[red]archive mismatch[/]: {served:,} exposures served, {tally.events:,} outcomes sent",
            highlight=False,
        )
        return 1
    errors = sum(v for k, v in tally.statuses.items() if k >= 500)
    if errors:
        console.print(f"[red]{errors} server errors[/]")
        return 1
    code = await _report(console, data_dir, conf / f"{EXPERIMENT_KEY}.yaml", archive)
    if code:
        return code
    return await _promote_and_trace(console, data_dir, env)


async def _report(console: Console, data_dir: Path, config: Path, archive: Path) -> int:
    """The experiment report of the demo's own traffic, when the analysis extra is installed."""
    try:
        from analysis import build_report, render_html, render_table
    except ImportError:
        console.print("(install abgate[analysis] to see the experiment report of this traffic)")
        return 0
    from experiments import load_experiment_file

    report = await asyncio.to_thread(build_report, load_experiment_file(config), archive)
    render_table(report, console)
    html = data_dir / "report.html"
    html.write_text(render_html(report), encoding="utf-8")
    console.print(f"html report: {html}")
    conversion = next(m for m in report.to_dict()["metrics"] if m["name"] == "conversion")
    low, high = conversion["comparisons"][0]["diff_ci"]
    truth = TREATMENT_CONVERSION - BASE_CONVERSION
    inside = low <= truth <= high
    console.print(
        f"simulated conversion difference {truth:+.3f} is {'inside' if inside else '[red]outside[/]'} "
        f"the reported 95% CI [{low:+.3f}, {high:+.3f}]"
    )
    return 0


@contextlib.asynccontextmanager
async def _gateway(
    url: str, env: dict[str, str], log: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``abgate serve`` as a child process, healthy on entry, stopped by SIGTERM on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "abgate", "serve"], env=env, stdout=out, stderr=out
        )
    try:
        await _wait_healthy(url, proc, log)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _experiment_listing(url: str) -> dict[str, Any]:
    """The demo experiment as ``GET /v1/experiments`` shows it (phase, pins)."""
    async with aiohttp.ClientSession() as client, client.get(url + "/v1/experiments") as r:
        body = orjson.loads(await r.read())
    return next(e for e in body["experiments"] if e["key"] == EXPERIMENT_KEY)


def _register_versions(tracking_uri: str, artifacts: Path) -> None:
    """A local sqlite MLflow registry holding home_recs 1 (@champion) and 2, as a team's would."""
    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its table-creation chatter
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model("home_recs", description="abgate demo ranker")
    for _ in ("1", "2"):
        client.create_model_version("home_recs", source=artifacts.as_uri())
    client.set_registered_model_alias("home_recs", "champion", "1")


async def _promote_and_trace(console: Console, data_dir: Path, env: dict[str, str]) -> int:
    """Promote v2 on the experiment's evidence, then print its lineage (needs abgate[mlflow])."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        console.print("(install abgate[mlflow] to promote on this evidence and see the lineage)")
        return 0
    registry_dir = data_dir / "mlflow"
    shutil.rmtree(registry_dir, ignore_errors=True)
    registry_dir.mkdir()
    uri = f"sqlite:///{registry_dir / 'mlflow.db'}"
    await asyncio.to_thread(_register_versions, uri, registry_dir / "artifacts")
    env = {**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "COLUMNS": "120"}
    steps = (
        ("promote", ["registry", "promote", "home_recs", "champion", "2", "--experiment",
                     EXPERIMENT_KEY, "--by", "abgate-demo"]),
        ("lineage", ["registry", "lineage", "models:/home_recs/2"]),
    )  # fmt: skip
    for label, args in steps:
        console.print(f"[6/6] $ abgate {' '.join(args)}", highlight=False)
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "abgate", *args],
            env=env,
            capture_output=True,
            text=True,
        )
        output = (done.stdout + done.stderr).rstrip()
        console.print(output, highlight=False, markup=False)
        if done.returncode != 0:
            console.print(f"[red]{label} failed (exit {done.returncode})[/]")
            return 1
    return 0
