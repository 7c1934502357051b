"""Cache warm-up: copy a version's lists into Redis exactly as the gateway would cache them.

The key is the gateway's (``experiments.results_key``: ``{prefix}r:{model}:{version}:{unit}``) and the
value the same bytes its read path caches (``items::text`` of ``results``), with the gateway's
TTL.

Postgres builds the RESP ``SET key value EX ttl`` commands of a chunk of units itself (one
``bytea`` per chunk), so the client only moves buffers from a Postgres socket to a Redis socket.
Several workers, each with a Postgres and a Redis connection, copy chunks in parallel: slices of
the asked-for units, or ranges of pages of the version's partition (TID Range Scans). Each keeps
two pipelines in flight, so memory stays bounded by two chunks a worker.

A failure of any worker (Redis refusing a write, a lost connection, a Postgres error) stops them
all and raises :class:`WarmError` with the number of keys Redis confirmed. Every key written is
whole (one SET each) and exactly what the gateway caches, so a stopped warm-up leaves nothing
to clean up: running it again finishes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import redis.asyncio as aioredis

from batch.errors import BatchError, SourceError, VersionError, WarmError
from batch.versions import ident
from experiments import ModelVersion, archive_hour, results_key_head

CHUNK = 500  # units a pipeline: ~1.7 MB of 3.4 KB lists; 2,000 cost the client ~30% more CPU a key


@dataclass(frozen=True, slots=True)
class WarmSummary:
    """What a warm-up wrote."""

    keys: int
    bytes: int  # written to Redis: keys, values and RESP framing
    missing: int  # asked-for units without a list in this version
    seconds: float


def recent_units(source: Path, top: int) -> list[str]:
    """The ``top`` most recently active units: from a text file (one unit id a line, most recent
    first) or from a log archive folder (units by their latest exposure).

    An archive in the export layout (``LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json``, each
    file an hour of entries) is read newest hour first, and only until ``top`` units were seen:
    any unit seen only in an older hour was active before all of them. A folder with other
    file names is read whole.
    """
    if not source.exists():
        raise SourceError(f"{source}: no such file or folder of recent units")
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
    for hour in _hours_newest_first(source):
        for path in hour:
            _scan_exposures(path, latest)
        if len(latest) >= top:
            break
    return sorted(latest, key=lambda u: latest[u], reverse=True)[:top]


def _hours_newest_first(root: Path) -> list[list[Path]]:
    """The archive's files grouped by hour, newest first (every log and shard of an hour
    together); one group of all files if any name does not follow the export layout."""
    hours: dict[str, list[Path]] = defaultdict(list)
    files = sorted(root.rglob("*.json"))
    for path in files:
        hour = archive_hour(path.relative_to(root).as_posix())
        if hour is None:
            return [files]
        hours[hour].append(path)
    return [hours[h] for h in sorted(hours, reverse=True)]


def _scan_exposures(path: Path, latest: dict[str, str]) -> None:
    """Record each exposed unit's latest timestamp found in ``path``."""
    with path.open("rb") as f:
        for line in f:
            try:
                payload = orjson.loads(line).get("jsonPayload") or {}
            except orjson.JSONDecodeError:
                continue
            if payload.get("type") == "exposure":
                u, ts = str(payload.get("unit_id")), str(payload.get("ts"))
                if ts > latest.get(u, ""):
                    latest[u] = ts


async def warm(
    pool: asyncpg.Pool,
    client: aioredis.Redis,
    mv: ModelVersion,
    *,
    prefix: str,
    ttl: int,
    units: Sequence[str] | None = None,
    chunk: int = CHUNK,
    workers: int = 0,
    progress: object | None = None,
) -> WarmSummary:
    """Write the lists of ``units`` (or of every unit) of active ``mv`` into Redis.

    ``workers`` (default: the pool's size) pairs of a Postgres and a Redis connection each
    copy one chunk at a time: a slice of ``units``, or a range of pages of the version's table.
    """
    started = time.perf_counter()
    row = await pool.fetchrow(
        "SELECT status, results_table, unit_count,"
        " CASE WHEN to_regclass(quote_ident(results_table)) IS NOT NULL"
        "  THEN pg_relation_size(quote_ident(results_table))"
        "   / current_setting('block_size')::int END AS pages,"
        " current_setting('server_encoding') = 'UTF8' AS utf8"
        " FROM model_versions WHERE model = $1 AND version = $2",
        mv.name,
        mv.version,
    )
    if row is None or row["status"] != "active" or not row["results_table"]:
        status = row["status"] if row is not None else "not loaded"
        raise VersionError(f"{mv} is {status}: only active versions can be warmed")
    sql = _chunk_sql(row["results_table"], by_units=units is not None, utf8=row["utf8"])
    if units is not None:
        jobs: list[tuple[object, ...]] = [
            (list(units[i : i + chunk]),) for i in range(0, len(units), chunk)
        ]
    else:
        jobs = _page_ranges(row["pages"] or 0, row["unit_count"] or 0, chunk)
    head = results_key_head(prefix, mv)
    tail = resp_command(b"EX", str(ttl).encode()).removeprefix(b"*2\r\n").decode()
    keys = size = 0  # keys: confirmed by Redis (+OK)
    pending = iter(jobs)

    async def confirm(redis: RespConnection, n: int) -> None:
        nonlocal keys
        try:
            await redis.expect_ok(n)
        except RedisWarmError as exc:
            keys += exc.confirmed
            raise
        keys += n

    async def worker() -> None:
        nonlocal keys, size
        async with pool.acquire() as conn:
            stmt = await conn.prepare(sql)
            redis = await RespConnection.open(client)
            try:
                in_flight = 0
                for job in pending:  # shared: each job goes to the first free worker
                    rows = await stmt.fetch(head, tail, *job, timeout=60)
                    n = len(rows)
                    if n:
                        data = b"".join([r[0] for r in rows])
                        redis.send(data)
                        size += len(data)
                    if in_flight:  # two pipelines in flight: read the previous one's replies
                        await confirm(redis, in_flight)
                    in_flight = n
                    if progress is not None:
                        progress.update(units=keys, items=0, done=keys)  # type: ignore[attr-defined]
                if in_flight:
                    await confirm(redis, in_flight)
            finally:
                await redis.close()

    n = max(1, min(workers or pool.get_max_size(), len(jobs)))
    try:
        async with asyncio.TaskGroup() as tg:
            for i in range(n):
                tg.create_task(worker(), name=f"abgate-warm-{i}")
    except ExceptionGroup as group:  # the first failure is the one to report
        first = group.exceptions[0]
        reason = _reason(first).rstrip(".")
        raise WarmError(
            f"{mv}: warm-up stopped after at least {keys:,} keys: {reason}. The keys written are whole "
            "and the gateway's own; run the warm-up again to finish",
            keys,
        ) from first
    missing = len(units) - keys if units is not None else 0
    return WarmSummary(keys, size, missing, time.perf_counter() - started)


def _chunk_sql(table: str, *, by_units: bool, utf8: bool) -> str:
    """The RESP ``SET`` command of each unit of a chunk, built by Postgres.

    Postgres formats the RESP itself (in parallel over the workers' connections), so the client
    only joins the rows of a chunk and moves the buffer from one socket to the other
    (``string_agg`` in SQL would save the join but costs Postgres 3 times as much, measured).
    Each value is ``convert_to(items, 'UTF8')``: byte for byte what the gateway caches
    (``items::text`` over a UTF-8 connection). ``octet_length`` of a compressed value reads its
    header, not the data; on a non-UTF-8 server it must measure the UTF-8 form.
    $1 is the key head, $2 the ``EX`` arguments in RESP.
    """
    size = "octet_length(items)" if utf8 else "octet_length(convert_to(items, 'UTF8'))"
    where = "unit_id = ANY($3::text[])" if by_units else "ctid >= $3::tid AND ctid < $4::tid"
    return (
        "SELECT convert_to(format("
        "E'*5\\r\\n$3\\r\\nSET\\r\\n$%s\\r\\n%s\\r\\n$%s\\r\\n%s\\r\\n%s',"
        f" octet_length(convert_to($1::text || unit_id, 'UTF8')), $1 || unit_id, {size}, items, $2::text),"
        f" 'UTF8') FROM {ident(table)} WHERE {where}"
    )


def _page_ranges(pages: int, units: int, chunk: int) -> list[tuple[object, ...]]:
    """TID ranges ``[(first page, 0), (end page, 0))`` of about ``chunk`` rows each (TID Range
    Scans, Postgres 14+). The last range is open-ended."""
    per_page = max(units / pages, 1.0) if pages else 1.0
    step = max(1, int(chunk / per_page))
    starts = list(range(0, max(pages, 1), step))
    ends = [*starts[1:], 2**32 - 1]  # (2^32-1, 0) is past the last page of any table
    return [((a, 0), (b, 0)) for a, b in zip(starts, ends, strict=True)]


class RespConnection:
    """A raw Redis connection for pipelined SETs, opened with the client's own settings.

    redis-py parses each reply through several Python layers (~60 µs a key, measured); a warm-up
    only needs "+OK" replies, so it writes RESP itself and checks the replies in bulk (~1 µs).
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> None:
        self.reader, self.writer, self.address = reader, writer, address

    @classmethod
    async def open(cls, client: aioredis.Redis) -> RespConnection:
        kw = client.connection_pool.connection_kwargs
        tls = "SSL" in client.connection_pool.connection_class.__name__
        host, port, path = kw.get("host", "127.0.0.1"), kw.get("port", 6379), kw.get("path")
        address = path or f"{host}:{port}"  # unix:// URLs give a socket path
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path)
                if path
                else asyncio.open_connection(host, port, ssl=tls or None),
                timeout=10,
            )
        except (OSError, TimeoutError) as exc:
            raise RedisWarmError(f"cannot connect to redis at {address}: {exc}") from exc
        conn = cls(reader, writer, address)
        try:
            if kw.get("password"):
                auth = [
                    b"AUTH",
                    *([kw["username"].encode()] if kw.get("username") else []),
                    kw["password"].encode(),
                ]
                conn.send(resp_command(*auth))
                await conn.expect_ok(1, "refused the login")
            if kw.get("db"):
                conn.send(resp_command(b"SELECT", str(kw["db"]).encode()))
                await conn.expect_ok(1, f"refused database {kw['db']}")
        except BaseException:
            await conn.close()
            raise
        return conn

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def expect_ok(self, n: int, refusal: str = "refused a write") -> None:
        """Read ``n`` replies; raise on any that is not +OK, with the replies that were +OK
        before it in ``confirmed``."""
        try:
            got = await asyncio.wait_for(self.reader.readexactly(5 * n), timeout=60)
            if got == b"+OK\r\n" * n:
                return
            start = got.find(b"-")
            line = got[start:] if start >= 0 else got[:80]
            if start >= 0 and b"\r\n" not in line:  # the error line goes on past what was read
                line += await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout=5)
        except asyncio.IncompleteReadError:
            raise RedisWarmError(f"redis at {self.address} closed the connection") from None
        except TimeoutError:
            raise RedisWarmError(f"redis at {self.address} did not answer in 60 s") from None
        except OSError as exc:
            raise RedisWarmError(f"redis at {self.address}: {exc}") from exc
        text = line.split(b"\r\n")[0].decode(errors="replace")
        raise RedisWarmError(f"redis {refusal}: {text}", confirmed=max(start, 0) // 5)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), timeout=5)


class RedisWarmError(BatchError):
    """Redis refused a warm-up write or could not be reached; ``confirmed`` replies of the
    pipeline were +OK before the refusal."""

    def __init__(self, message: str, confirmed: int = 0) -> None:
        super().__init__(message)
        self.confirmed = confirmed


def _reason(exc: BaseException) -> str:
    """One line on why a worker stopped: ours say it; Postgres's get its name; others their type."""
    if isinstance(exc, BatchError):
        return str(exc)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return f"postgres: {type(exc).__name__}: {exc}"
    if isinstance(exc, OSError | TimeoutError):
        return f"{type(exc).__name__}: {exc}"
    raise exc  # a bug of ours: keep its traceback


def resp_command(*args: bytes) -> bytes:
    """One Redis command in RESP, the protocol's wire format."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
