"""Benchmark of loading and warm-up against the physical limits of this machine (not a test).

    python -m benchmarks.batch_load --units 1000000 --items 100 --dir /tmp/abgate-bench

1. Generates the same results three ways: a long CSV (unit_id,item_id,score), a wide Parquet
   file (unit_id, item_ids, scores) and the final rows as COPY text (unit_id <TAB> JSON list).
2. Baselines: ``psql \\copy`` of the long CSV into a plain 3-column table, and of the final rows
   into a plain 2-column table (no index, no validation: the physical limit of moving the bytes).
3. ``abgate batch load`` of the CSV and of the Parquet file, each in its own process, with its
   wall time and peak RSS.
4. Point reads (the gateway's SQL) on the loaded partition; DROP of a partition vs DELETE.
5. ``abgate batch warm --top N`` vs ``redis-benchmark -P 16``: ``-t set`` (3-byte values, and
   values of the same size as the lists, on one key and on N random keys), and the warm-up's
   own command, ``SET <random key> <list-sized value> EX <ttl>`` over 10^9 keys (nearly every
   key new, as in a warm-up: a new 3.4 KB key with a TTL costs Redis about twice the CPU of
   overwriting one); and vs replaying prebuilt ``SET ... EX`` pipelines of as many new keys from
   memory (Redis's own share).

Prints one JSON document of figures. Needs ABGATE_POSTGRES_DSN and ABGATE_REDIS_URL (defaults:
the local servers); uses its own schema ``abgate_bench`` and key prefix ``abgate-bench:``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import redis.asyncio as aioredis

from batch.frames import UnitBatch, data_bytes, json_lists
from batch.warm import RespConnection, resp_command

SCHEMA = "abgate_bench"
PREFIX = "abgate-bench:"
CHUNK_UNITS = 10_000


def generate(out: Path, units: int, items: int, seed: int = 7) -> dict[str, Path]:
    """The long CSV, the wide Parquet file and the final COPY text of the same results."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "long.csv", "parquet": out / "wide.parquet", "final": out / "final.tsv"}
    if all(p.exists() for p in paths.values()):
        return paths
    final_paths, paths = paths, {k: p.with_suffix(p.suffix + ".part") for k, p in paths.items()}
    rng = np.random.default_rng(seed)
    long_schema = pa.schema(
        [("unit_id", pa.string()), ("item_id", pa.string()), ("score", pa.float64())]
    )
    wide_schema = pa.schema(
        [
            ("unit_id", pa.string()),
            ("item_ids", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
        ]
    )
    opts = pacsv.WriteOptions(include_header=True, quoting_style="none")
    with (
        paths["csv"].open("wb") as fcsv,
        pacsv.CSVWriter(fcsv, long_schema, write_options=opts) as csv_writer,
        pq.ParquetWriter(paths["parquet"], wide_schema) as pq_writer,
        paths["final"].open("wb") as ffinal,
    ):
        for start in [-1, *range(0, units, CHUNK_UNITS)]:  # -1: the __default__ unit first
            n = min(CHUNK_UNITS, units - max(start, 0)) if start >= 0 else 1
            ids = pc.cast(pa.array(np.arange(max(start, 0), max(start, 0) + n)), pa.string())
            unit_ids = (
                pc.binary_join_element_wise("u", ids, "")
                if start >= 0
                else pa.array(["__default__"])
            )
            # distinct items in each list: a random start and stride over 200,000 items
            start_item = rng.integers(0, 200_000, size=(n, 1))
            stride = rng.integers(1, max(2, 200_000 // items), size=(n, 1))
            item_nums = (start_item + np.arange(items) * stride) % 200_000
            scores = np.round(-np.sort(-rng.random((n, items)), axis=1), 4)
            flat_items = pc.binary_join_element_wise(
                "sku-", pc.cast(pa.array(item_nums.ravel()), pa.string()), ""
            )
            flat_units = pc.take(unit_ids, pa.array(np.repeat(np.arange(n), items)))
            csv_writer.write_table(
                pa.table([flat_units, flat_items, pa.array(scores.ravel())], schema=long_schema)
            )
            offsets = pa.array(np.arange(0, n * items + 1, items, dtype=np.int32))
            pq_writer.write_table(
                pa.table(
                    [
                        unit_ids,
                        pa.ListArray.from_arrays(offsets, flat_items),
                        pa.ListArray.from_arrays(offsets, pa.array(scores.ravel())),
                    ],
                    schema=wide_schema,
                )
            )
            if start >= 0:
                batch = UnitBatch(
                    unit_ids,
                    np.arange(0, n * items + 1, items, dtype=np.int64),
                    flat_items,
                    pa.array(scores.ravel()),
                    np.arange(n),
                )
                lists, _ = json_lists(batch)
                lines = pc.binary_join_element_wise(unit_ids, lists, "\t")
                ffinal.write(data_bytes(pc.binary_join_element_wise(lines, "\n", "")))
    for k, p in paths.items():
        p.rename(final_paths[k])
    return final_paths


def _psql(dsn: str, *commands: str) -> float:
    """Seconds to run ``commands`` (each its own -c: psql runs \\copy alone) in one psql."""
    args = [a for c in commands for a in ("-c", c)]
    started = time.perf_counter()
    subprocess.run(
        ["psql", dsn, "-v", "ON_ERROR_STOP=1", "-q", *args], check=True, capture_output=True
    )
    return time.perf_counter() - started


def _timed_child(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and stderr of a child process.

    The peak is the child's own ``VmHWM``, sampled every 20 ms: ``wait4``'s ``ru_maxrss`` would
    also count this (large) process, whose memory high-water mark Linux carries over into a
    child at ``exec``.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _vm_hwm(proc.pid))
            time.sleep(0.02)
        took = time.perf_counter() - started
        errors.seek(0)
        err = errors.read().decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err[-2000:]}")
    return took, peak, err


def _vm_hwm(pid: int) -> int:
    """Peak resident memory (bytes) of a running process, 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def _reads(dsn: str, model: str, version: str, units: int, n: int = 5000) -> dict[str, float]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": SCHEMA})
    rng = np.random.default_rng(1)
    sql = "SELECT items::text FROM results WHERE model = $1 AND version = $2 AND unit_id = $3"
    lat = []
    try:
        stmt = await conn.prepare(sql)
        for u in rng.integers(0, units, size=n):
            t = time.perf_counter()
            await stmt.fetchval(model, version, f"u{u}")
            lat.append(time.perf_counter() - t)
    finally:
        await conn.close()
    a = np.asarray(lat) * 1000
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
    }


def _median(xs: list[float]) -> float:
    return float(np.median(xs))


def _redis_benchmark(url: str, n: int, size: int, keys: int = 0, ttl: int = 0) -> float:
    """SETs/s of ``redis-benchmark -P 16``: one key overwritten, or ``keys`` random keys; with
    ``ttl``, the warm-up's own command (``SET <random key> <value> EX ttl``, keys drawn from
    10^9 so that nearly all are new, as in a warm-up)."""
    u = urlparse(url)
    where = ["-h", u.hostname or "127.0.0.1", "-p", str(u.port or 6379)]
    db = ["--dbnum", u.path.strip("/")] if u.path.strip("/") else []
    if ttl:
        what = ["-r", str(10**9), "SET", f"{PREFIX}rb:__rand_int__", "x" * size, "EX", str(ttl)]
    else:
        what = ["-t", "set", "-d", str(size), *(["-r", str(keys)] if keys else [])]
    out = subprocess.run(
        ["redis-benchmark", *where, *db, "-P", "16", "-n", str(n), "-q", *what],  # options first
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cli = ["redis-cli", *where, *(["-n", db[1]] if db else [])]
    subprocess.run([*cli, "DEL", "key:__rand_int__"], check=True, capture_output=True)
    if keys:  # -r names keys key:<12 digits>
        subprocess.run(
            [*cli, "EVAL", _DEL_MATCHING, "0", "key:" + "[0-9]" * 12],
            check=True,
            capture_output=True,
        )
    if ttl:
        asyncio.run(_drop_prefix(url))
    return float(re.findall(r"([\d.]+) requests per second", out)[-1])


async def _redis_replay(url: str, n: int, size: int, ttl: int = 86_400) -> float:
    """SETs/s of replaying prebuilt ``SET key value EX ttl`` pipelines (2,000 commands, four
    connections) of ``n`` new keys: what Redis alone takes for the warm-up's writes."""
    client = aioredis.from_url(url)
    value = b"x" * size
    chunks = []
    for start in range(0, n, 2000):
        cmds = []
        for i in range(start, min(start + 2000, n)):
            key = f"{PREFIX}replay:{i}".encode()
            cmds.append(resp_command(b"SET", key, value, b"EX", str(ttl).encode()))
        chunks.append((len(cmds), b"".join(cmds)))
    pending = iter(chunks)

    async def writer() -> None:
        conn = await RespConnection.open(client)
        try:
            in_flight = 0
            for count, data in pending:
                conn.send(data)
                if in_flight:
                    await conn.expect_ok(in_flight)
                in_flight = count
            if in_flight:
                await conn.expect_ok(in_flight)
        finally:
            await conn.close()

    try:
        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(4)))
        return n / (time.perf_counter() - started)
    finally:
        await client.aclose()


_DEL_MATCHING = """local n, cursor = 0, "0"
repeat
  local r = redis.call("SCAN", cursor, "MATCH", ARGV[1], "COUNT", 10000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do redis.call("DEL", k); n = n + 1 end
until cursor == "0"
return n"""


async def _redis_memory_cpu(url: str) -> tuple[int, float]:
    """Redis's ``used_memory`` (bytes) and CPU seconds so far (user + sys, ``INFO``)."""
    client = aioredis.from_url(url)
    try:
        memory, cpu = await client.info("memory"), await client.info("cpu")
        return int(memory["used_memory"]), float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    finally:
        await client.aclose()


async def _drop_prefix(url: str) -> None:
    client = aioredis.from_url(url)
    try:
        batch = []
        async for k in client.scan_iter(match=PREFIX + "*", count=5000):
            batch.append(k)
            if len(batch) == 5000:
                await client.delete(*batch)  # not UNLINK: no lazy freeing during what follows
                batch = []
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


def _loads(
    args: argparse.Namespace,
    dsn: str,
    abgate: str,
    env: dict[str, str],
    paths: dict[str, Path],
    fig: dict[str, object],
) -> None:
    """``psql \\copy`` baselines, then ``abgate batch load`` of the CSV (v1) and Parquet (v2)."""
    item_rows = args.units * args.items
    s = _psql(
        dsn,
        f"CREATE TABLE {SCHEMA}.plain_long (unit_id text, item_id text, score float8)",
        f"\\copy {SCHEMA}.plain_long FROM '{paths['csv']}' WITH (FORMAT csv, HEADER true)",
    )
    fig["psql_copy_long_csv"] = {"seconds": round(s, 1), "item_rows_per_s": round(item_rows / s)}
    _psql(dsn, f"DROP TABLE {SCHEMA}.plain_long")
    s = _psql(
        dsn,
        f"CREATE TABLE {SCHEMA}.plain_final (unit_id text, items text)",
        f"\\copy {SCHEMA}.plain_final FROM '{paths['final']}'",
    )
    fig["psql_copy_final_rows"] = {"seconds": round(s, 1), "item_rows_per_s": round(item_rows / s)}
    for name, version in (("csv", "1"), ("parquet", "2")):
        took, rss, _ = _timed_child(
            [abgate, "batch", "load", str(paths[name]), "--model", "bench", "--version", version],
            env,
        )
        fig[f"abgate_load_{name}"] = {
            "seconds": round(took, 1),
            "item_rows_per_s": round(item_rows / took),
            "units_per_s": round(args.units / took),
            "peak_rss_mib": round(rss / 2**20),
        }
    base = fig["psql_copy_long_csv"]["item_rows_per_s"]  # type: ignore[index]
    fig["ratio_load_csv_vs_psql_long_csv"] = round(
        fig["abgate_load_csv"]["item_rows_per_s"] / base, 2
    )  # type: ignore[index]
    fig["ratio_load_parquet_vs_psql_long_csv"] = round(
        fig["abgate_load_parquet"]["item_rows_per_s"] / base, 2
    )  # type: ignore[index]
    fig["ratio_load_csv_vs_psql_final_rows"] = round(
        fig["abgate_load_csv"]["item_rows_per_s"] / fig["psql_copy_final_rows"]["item_rows_per_s"],
        2,
    )  # type: ignore[index]
    fig["point_reads"] = asyncio.run(_reads(dsn, "bench", "1", args.units))


def _warm(
    args: argparse.Namespace,
    url: str,
    abgate: str,
    env: dict[str, str],
    paths: dict[str, Path],
    fig: dict[str, object],
) -> None:
    # Warm-up against redis-benchmark (same number of keys; 3-byte values and list-sized values).
    asyncio.run(_drop_prefix(url))
    recent = args.dir / "recent.txt"
    recent.write_text("\n".join(f"u{i}" for i in range(args.warm)) + "\n")
    value = round(paths["final"].stat().st_size / args.units)
    warm_cmd = [abgate, "batch", "warm", "--model", "bench", "--version", "1"]
    warm_cmd += ["--top", str(args.warm), "--activity", str(recent)]
    # Rounds interleave the warm-up and redis-benchmark running the warm-up's own command, each
    # on an emptied key space: Redis is faster on memory it freed moments ago, so order matters.
    rounds: list[dict[str, float]] = []
    for _ in range(args.warm_rounds):
        before, cpu0 = asyncio.run(_redis_memory_cpu(url))
        took, rss, err = _timed_child(warm_cmd, env)
        after, cpu1 = asyncio.run(_redis_memory_cpu(url))
        asyncio.run(_drop_prefix(url))
        reported = int(re.findall(r"([\d,]+) keys/s", err)[-1].replace(",", ""))
        cpu2 = asyncio.run(_redis_memory_cpu(url))[1]
        same = _redis_benchmark(url, args.warm, value, ttl=3600)
        cpu3 = asyncio.run(_redis_memory_cpu(url))[1]
        rounds.append(
            {
                "warm_keys_per_s": round(args.warm / took),
                "warm_keys_per_s_reported": reported,  # without ~0.6 s of imports, connections
                "redis_benchmark_set_ex_new_keys": round(same),
                "ratio": round(args.warm / took / same, 2),
                "ratio_reported": round(reported / same, 2),
                "peak_rss_mib": round(rss / 2**20),
                "redis_bytes_per_key": round((after - before) / args.warm),  # INFO used_memory
                # Redis's own CPU per key written (INFO cpu): the machine's noise hardly moves it
                "redis_cpu_us_per_key_warm": round((cpu1 - cpu0) / args.warm * 1e6, 2),
                "redis_cpu_us_per_key_redis_benchmark": round((cpu3 - cpu2) / args.warm * 1e6, 2),
            }
        )
    fig["warm_rounds"] = rounds
    fig["warm"] = {
        "keys": args.warm,
        "value_bytes": value,
        **{k: _median([r[k] for r in rounds]) for k in rounds[0]},
    }
    took = args.warm / fig["warm"]["warm_keys_per_s"]  # type: ignore[index]
    fig["redis_benchmark_P16_set_3B"] = _redis_benchmark(url, args.warm, 3)
    fig["redis_benchmark_P16_set_value_size"] = _redis_benchmark(url, args.warm, value)
    fig["redis_benchmark_P16_set_value_size_random_keys"] = _redis_benchmark(
        url, args.warm, value, keys=args.warm
    )
    fig["redis_replay_set_ex_value_size"] = round(asyncio.run(_redis_replay(url, args.warm, value)))
    asyncio.run(_drop_prefix(url))
    fig["ratio_warm_vs_redis_benchmark_set_ex_new_keys"] = fig["warm"]["ratio"]  # type: ignore[index]
    fig["ratio_warm_vs_redis_replay"] = round(
        args.warm / took / fig["redis_replay_set_ex_value_size"], 2
    )  # type: ignore[operator]
    fig["ratio_warm_vs_redis_benchmark_3B"] = round(
        args.warm / took / fig["redis_benchmark_P16_set_3B"], 2
    )  # type: ignore[operator]
    fig["ratio_warm_vs_redis_benchmark_value_size"] = round(
        args.warm / took / fig["redis_benchmark_P16_set_value_size"], 2
    )  # type: ignore[operator]
    fig["ratio_warm_vs_redis_benchmark_value_size_random_keys"] = round(
        args.warm / took / fig["redis_benchmark_P16_set_value_size_random_keys"], 2
    )  # type: ignore[operator]


def _swap(dsn: str, fig: dict[str, object]) -> None:
    # Bulk swap cost: dropping a version's partition vs deleting its rows from one big table.
    leaf = subprocess.run(
        [
            "psql",
            dsn,
            "-Atc",
            f"SELECT results_table FROM {SCHEMA}.model_versions WHERE version = '2'",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    fig["drop_partition_s"] = round(_psql(dsn, f'DROP TABLE {SCHEMA}."{leaf}"'), 2)
    fig["delete_1m_rows_s"] = round(_psql(dsn, f"DELETE FROM {SCHEMA}.plain_final"), 2)
    fig["sizes_mib"] = {
        "partition_v1": round(
            int(
                subprocess.run(
                    [
                        "psql",
                        dsn,
                        "-Atc",
                        f"SELECT pg_total_relation_size(quote_ident(results_table)) FROM {SCHEMA}.model_versions WHERE version = '1'",
                    ],
                    env={**os.environ, "PGOPTIONS": f"-c search_path={SCHEMA}"},
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                or 0
            )
            / 2**20
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/abgate-batch-bench"))
    ap.add_argument("--warm", type=int, default=200_000, help="keys to warm (values ~ 3.5 KB each)")
    ap.add_argument("--warm-rounds", type=int, default=3, help="warm-up vs redis-benchmark rounds")
    ap.add_argument(
        "--only-warm", action="store_true", help="load the Parquet file once, then only the warm-up"
    )
    ap.add_argument("--keep-files", action="store_true")
    args = ap.parse_args()
    dsn = os.environ.get("ABGATE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    url = os.environ.get("ABGATE_REDIS_URL", "redis://127.0.0.1:6379/0")
    abgate = str(Path(sys.executable).parent / "abgate")
    env = {
        **os.environ,
        "ABGATE_POSTGRES_DSN": dsn,
        "ABGATE_POSTGRES_SCHEMA": SCHEMA,
        "ABGATE_REDIS_URL": url,
        "ABGATE_REDIS_PREFIX": PREFIX,
    }
    fig: dict[str, object] = {"units": args.units, "items_per_unit": args.items}
    try:
        _measure(args, dsn, url, abgate, env, fig)
    finally:  # a failure late in a long run still shows what was measured
        print(json.dumps(fig, indent=2))


def _measure(
    args: argparse.Namespace,
    dsn: str,
    url: str,
    abgate: str,
    env: dict[str, str],
    fig: dict[str, object],
) -> None:
    t = time.perf_counter()
    paths = generate(args.dir, args.units, args.items)
    fig["generate_s"] = round(time.perf_counter() - t, 1)
    fig["bytes"] = {k: p.stat().st_size for k, p in paths.items()}
    _psql(dsn, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
    try:
        if args.only_warm:
            load = [abgate, "batch", "load", str(paths["parquet"])]
            _timed_child([*load, "--model", "bench", "--version", "1"], env)
            _warm(args, url, abgate, env, paths, fig)
        else:
            _loads(args, dsn, abgate, env, paths, fig)
            _warm(args, url, abgate, env, paths, fig)
            _swap(dsn, fig)
    finally:  # a failed run leaves neither the schema, nor the keys, nor gigabytes of inputs
        _psql(dsn, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        asyncio.run(_drop_prefix(url))
        if not args.keep_files:  # only the files this wrote: the folder may hold others'
            for p in [*paths.values(), args.dir / "recent.txt"]:
                p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
