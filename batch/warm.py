"""Cache warm-up: copy a version's lists into Redis exactly as the gateway would cache them.

The key is the gateway's (``{prefix}r:{model}:{version}:{unit}``, gateway/results.py) and the
value the same bytes its read path caches (``items::text`` of ``results``), with the gateway's
TTL. Postgres is read with a server-side cursor and Redis written with pipelines, two chunks in
flight, so memory stays bounded by two chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import redis.asyncio as aioredis

from batch.errors import BatchError, VersionError
from experiments import ModelVersion

CHUNK = 2_000
Row = tuple[str, bytes]


def cache_key(prefix: str, mv: ModelVersion, unit_id: str) -> str:
    """The gateway's Redis key of a unit's list (``RedisResultsCache.key``)."""
    return f"{prefix}r:{mv.name}:{mv.version}:{unit_id}"


@dataclass(frozen=True, slots=True)
class WarmSummary:
    """What a warm-up wrote."""

    keys: int
    bytes: int
    missing: int  # asked-for units without a list in this version
    seconds: float


def recent_units(source: Path, top: int) -> list[str]:
    """The ``top`` most recently active units: from a text file (one unit id a line, most recent
    first) or from a log archive folder (units by their latest exposure)."""
    if source.is_file():
        out: list[str] = []
        seen: set[str] = set()
        with source.open(encoding="utf-8") as f:
            for line in f:
                u = line.strip()
                if u and u not in seen:
                    seen.add(u)
                    out.append(u)
                    if len(out) == top:
                        break
        return out
    latest: dict[str, str] = {}
    for p in source.rglob("*.json"):
        with p.open("rb") as f:
            for line in f:
                try:
                    payload = orjson.loads(line).get("jsonPayload") or {}
                except orjson.JSONDecodeError:
                    continue
                if payload.get("type") == "exposure":
                    u, ts = str(payload.get("unit_id")), str(payload.get("ts"))
                    if ts > latest.get(u, ""):
                        latest[u] = ts
    return sorted(latest, key=lambda u: latest[u], reverse=True)[:top]


async def warm(
    pool: asyncpg.Pool,
    client: aioredis.Redis,
    mv: ModelVersion,
    *,
    prefix: str,
    ttl: int,
    units: Sequence[str] | None = None,
    chunk: int = CHUNK,
    progress: object | None = None,
) -> WarmSummary:
    """Write the lists of ``units`` (or of every unit) of active ``mv`` into Redis."""
    started = time.perf_counter()
    status = await pool.fetchval(
        "SELECT status FROM model_versions WHERE model = $1 AND version = $2", mv.name, mv.version
    )
    if status != "active":
        raise VersionError(f"{mv} is {status or 'not loaded'}: only active versions can be warmed")
    queue: asyncio.Queue[list[Row] | None] = asyncio.Queue(maxsize=2)
    asked = 0 if units is None else len(units)
    reader = asyncio.create_task(_read(pool, mv, units, chunk, queue), name="abgate-warm-read")
    keys = size = 0
    conn = await _RespConnection.open(client)
    try:
        in_flight = 0
        while (rows := await queue.get()) is not None:
            head = f"{prefix}r:{mv.name}:{mv.version}:".encode()
            ex = str(ttl).encode()
            parts = []
            for unit_id, raw in rows:
                key = head + unit_id.encode()
                parts.append(
                    b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n"
                    % (len(key), key, len(raw), raw, len(ex), ex)
                )
                size += len(raw)
            conn.send(b"".join(parts))
            if in_flight:  # two pipelines in flight: read the previous one's replies now
                await conn.expect_ok(in_flight)
            in_flight = len(rows)
            keys += len(rows)
            if progress is not None:
                progress.update(units=keys, items=0, done=keys)  # type: ignore[attr-defined]
        if in_flight:
            await conn.expect_ok(in_flight)
        await reader
    finally:
        conn.close()
        if not reader.done():
            reader.cancel()
    missing = asked - keys if units is not None else 0
    return WarmSummary(keys, size, missing, time.perf_counter() - started)


class _RespConnection:
    """A raw Redis connection for pipelined SETs, opened with the client's own settings.

    redis-py parses each reply through several Python layers (~60 µs a key, measured); a warm-up
    only needs "+OK" replies, so it writes RESP itself and checks the replies in bulk (~1 µs).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, client: aioredis.Redis) -> _RespConnection:
        kw = client.connection_pool.connection_kwargs
        tls = "SSL" in client.connection_pool.connection_class.__name__
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                kw.get("host", "127.0.0.1"), kw.get("port", 6379), ssl=tls or None
            ),
            timeout=10,
        )
        conn = cls(reader, writer)
        if kw.get("password"):
            auth = [
                b"AUTH",
                *([kw["username"].encode()] if kw.get("username") else []),
                kw["password"].encode(),
            ]
            conn.send(_command(*auth))
            await conn.expect_ok(1)
        if kw.get("db"):
            conn.send(_command(b"SELECT", str(kw["db"]).encode()))
            await conn.expect_ok(1)
        return conn

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def expect_ok(self, n: int) -> None:
        """Read ``n`` replies; raise on any that is not +OK."""
        got = await asyncio.wait_for(self.reader.readexactly(5 * n), timeout=60)
        if got != b"+OK\r\n" * n:
            start = got.find(b"-")
            line = got[start:].split(b"\r\n")[0] if start >= 0 else got[:80]
            raise RedisWarmError(f"redis refused a write: {line.decode(errors='replace')}")

    def close(self) -> None:
        self.writer.close()


class RedisWarmError(BatchError):
    """Redis answered a warm-up write with an error."""


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def _read(
    pool: asyncpg.Pool,
    mv: ModelVersion,
    units: Sequence[str] | None,
    chunk: int,
    queue: asyncio.Queue[list[Row] | None],
) -> None:
    # convert_to(items::text) is byte for byte what the gateway caches (items::text, UTF-8),
    # without decoding each list into a Python str and encoding it back.
    select = "SELECT unit_id, convert_to(items::text, 'UTF8') FROM results WHERE model = $1 AND version = $2"
    async with pool.acquire() as conn:
        if units is None:
            async with conn.transaction(readonly=True):
                rows: list[Row] = []
                async for r in conn.cursor(select, mv.name, mv.version, prefetch=chunk, timeout=60):
                    rows.append((r[0], r[1]))
                    if len(rows) == chunk:
                        await queue.put(rows)
                        rows = []
                if rows:
                    await queue.put(rows)
        else:
            for i in range(0, len(units), chunk):
                got = await conn.fetch(
                    select + " AND unit_id = ANY($3::text[])",
                    mv.name,
                    mv.version,
                    list(units[i : i + chunk]),
                    timeout=60,
                )
                if got:
                    await queue.put([(r[0], r[1]) for r in got])
    await queue.put(None)
