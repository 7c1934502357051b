"""The benchmark's data: result files, the gateway's config folder, the reference's Redis keys.

Both model versions get ``units`` lists of ``items`` items (ids among sku-0..sku-49999, scores
descending), the keys benchmarks/gateway/ref_app.py reads. The reference app reads the
same lists from its own keys (``ref:{variant}:{unit}``), so both serve identical bytes sizes.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import redis

from benchmarks.gateway.ref_app import variant_of

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MODEL = "home_recs"
VERSIONS = ("1", "2")
CATALOG = 50_000


def write_results(path: Path, units: int, items: int, seed: int) -> None:
    """A JSON Lines results file: one line per unit, plus the ``__default__`` list."""
    rng = random.Random(seed)
    scores = [round(1 - k / items, 4) for k in range(items)]
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        for n in range(-1, units):
            unit = "__default__" if n < 0 else f"u{n}"
            ids = rng.sample(range(CATALOG), items)
            row = {
                "unit_id": unit,
                "items": [{"id": f"sku-{i}", "score": s} for i, s in zip(ids, scores, strict=True)],
            }
            f.write(orjson.dumps(row) + b"\n")
    tmp.rename(path)


def results_files(work: Path, units: int, items: int) -> dict[str, Path]:
    """The results file of each version, written unless already there for these sizes."""
    out = {}
    for v in VERSIONS:
        path = work / f"results-v{v}-{units}x{items}.jsonl"
        if not path.exists():
            write_results(path, units, items, seed=int(v))
        out[v] = path
    return out


def load_results(files: dict[str, Path], dsn: str, schema: str) -> None:
    """``abgate batch load`` each version (the CLI, as operators do)."""
    env = {**os.environ, "ABGATE_POSTGRES_DSN": dsn, "ABGATE_POSTGRES_SCHEMA": schema}
    for version, path in files.items():
        _abgate(["batch", "load", str(path), "--model", MODEL, "--version", version], env)


def warm_cache(dsn: str, schema: str, redis_url: str, prefix: str) -> None:
    """``abgate batch warm`` each version into the gateway's Redis keys."""
    env = {
        **os.environ,
        "ABGATE_POSTGRES_DSN": dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "ABGATE_REDIS_URL": redis_url,
        "ABGATE_REDIS_PREFIX": prefix,
    }
    for version in VERSIONS:
        _abgate(["batch", "warm", "--model", MODEL, "--version", version], env)


def _abgate(args: list[str], env: dict[str, str]) -> None:
    abgate = str(Path(sys.executable).parent / "abgate")
    proc = subprocess.run([abgate, *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"abgate {' '.join(args)} failed:\n{proc.stderr[-2000:]}")


def write_config(folder: Path) -> None:
    """Surfaces and one running 50/50 experiment on ``home_top``.

    ``home_nolog`` runs no experiment: it serves version 1 and logs no exposure, which is the
    closest the gateway has to "exposure logging off".
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "surfaces.yaml").write_text(
        "surfaces:\n"
        f'  - {{name: home_top, default_model: "models:/{MODEL}/1"}}\n'
        f'  - {{name: home_nolog, default_model: "models:/{MODEL}/1"}}\n'
    )
    (folder / "home-recs-bench.yaml").write_text(
        "key: home-recs-bench\n"
        "surface: home_top\n"
        "status: running\n"
        "variants:\n"
        f'  - {{key: control, weight: 50, model: "models:/{MODEL}/1"}}\n'
        f'  - {{key: treatment, weight: 50, model: "models:/{MODEL}/2"}}\n'
    )


def seed_reference(files: dict[str, Path], redis_url: str) -> int:
    """Write ``ref:{variant}:{unit}``: control gets version 1's list, treatment version 2's."""
    client = redis.Redis.from_url(redis_url)
    lists: dict[str, dict[str, bytes]] = {}
    for version, path in files.items():
        with path.open("rb") as f:
            lists[version] = {}
            for line in f:
                row = orjson.loads(line)
                lists[version][row["unit_id"]] = orjson.dumps(row["items"])
    pipe = client.pipeline(transaction=False)
    n = 0
    for unit in lists["1"]:
        if unit == "__default__":
            continue
        variant = variant_of(unit)
        pipe.set(f"ref:{variant}:{unit}", lists["1" if variant == "control" else "2"][unit])
        n += 1
        if n % 1000 == 0:
            pipe.execute()
    pipe.execute()
    client.close()
    return n


def delete_keys(redis_url: str, *patterns: str) -> int:
    """Delete the keys matching each pattern (SCAN + UNLINK: no blocking KEYS)."""
    client = redis.Redis.from_url(redis_url)
    n = 0
    for pattern in patterns:
        batch = []
        for key in client.scan_iter(match=pattern, count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                n += client.unlink(*batch)
                batch.clear()
        if batch:
            n += client.unlink(*batch)
    client.close()
    return n


def add_data_options(
    p: argparse.ArgumentParser,
    *,
    units: int | None,
    schema: str,
    redis_db: int = 12,
    work: Path | None,
) -> None:
    """The options every benchmark over this data shares: its size (``--units``/``--items``,
    unless ``units`` is None), the Postgres schema and Redis database it owns, its work folder."""
    if units is not None:
        p.add_argument("--units", type=int, default=units)
        p.add_argument("--items", type=int, default=100)
    p.add_argument("--pg-dsn", default=PG_DSN)
    p.add_argument("--schema", default=schema, help="dedicated to the benchmark")
    p.add_argument(
        "--redis-url", default=f"redis://127.0.0.1:6379/{redis_db}", help="dedicated database"
    )
    p.add_argument("--work", type=Path, default=work)
