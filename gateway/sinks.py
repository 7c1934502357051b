"""Exposure and outcome logging: a batching writer in front of a log sink.

A request encodes its record (one ``orjson`` call and a join, ~1 µs) and appends the line to an
in-memory queue; it never waits on disk. A named background task writes the queue in batches
(``log_batch_size`` lines, or every ``log_flush_interval`` seconds), each batch as one
``write(2)`` per hourly file. On shutdown every accepted record is written. A failed write keeps
its batch and is retried.

The batch is written on the event loop, not in a worker thread. Measured with the benchmark's
gateway (``python -m loadtests.benchmark``, docs/benchmarks.md): handing batches to a thread cost
~23 µs of CPU per exposure, because the thread and the event loop then fight over the GIL at
every system call, against ~11 µs for the whole exposure when written inline; a 1,000-line
batch (~0.5 MB) takes ~0.6 ms to append to a local disk's page cache. The archive folder must
therefore be on a local disk or tmpfs (as on Cloud Run), never a network mount; a write slower
than ``SLOW_WRITE`` seconds is logged as a warning.

``ArchiveSink`` writes Cloud Logging's Cloud Storage export layout (DESIGN.md, "The archive"):
``LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json``, one LogEntry JSON object per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Protocol

import orjson

from experiments import Record
from gateway.metrics import Metrics

log = logging.getLogger("abgate.gateway")

SLOW_WRITE = 0.05  # seconds; a batch write slower than this blocked the event loop noticeably


# An encoded record: the key of the object it goes to (the archive's hour) and its line.
Line = tuple[str, bytes]


class LogSink(Protocol):
    """Somewhere records are written durably.

    Both methods run on the event loop: ``encode`` for each record (it must be cheap), ``write``
    with a batch of encoded lines (it must only append locally; a sink that talks to a network
    service hands its batches to a thread of its own).
    """

    def encode(self, record: Record) -> Line:
        """The record as written."""
        ...

    def write(self, lines: Sequence[Line]) -> Awaitable[None] | None:
        """Write every line or raise; a sink that sends over the network returns an awaitable
        (it must not block the event loop while it waits)."""
        ...


def archive_path(root: Path, log_id: str, ts: str) -> Path:
    """The export object of the hour of ``ts`` (``2026-11-26T18:04:30.123456Z``, or its first
    13 characters ``2026-11-26T18``)."""
    y, mo, d, h = ts[0:4], ts[5:7], ts[8:10], ts[11:13]
    return root / log_id / y / mo / d / f"{h}:00:00_{h}:59:59_S0.json"


class LogEntryEncoder:
    """Records as Cloud Logging ``LogEntry`` JSON, the form of both the archive's lines and the
    entries sent to the Cloud Logging API."""

    def __init__(self, *, project: str, log_id: str) -> None:
        self.log_id = log_id
        self.log_name = f"projects/{project}/logs/{log_id}"
        # The constant parts of a LogEntry line, encoded once.
        self._head = b'{"logName":' + orjson.dumps(self.log_name) + b',"insertId":'
        self._middle = (
            b',"severity":"INFO","resource":{"type":"generic_task","labels":{}},"jsonPayload":'
        )

    def line(self, record: Record) -> bytes:
        """The LogEntry of one record as one JSON line (keys in the export's order)."""
        return b"".join(
            (
                self._head,
                orjson.dumps(record.event_id),
                b',"timestamp":',
                orjson.dumps(record.ts),
                self._middle,
                orjson.dumps(record.as_payload()),
                b"}",
            )
        )

    def encode(self, record: Record) -> Line:
        """The record's hour (``YYYY-MM-DDTHH``) and its line."""
        return record.ts[:13], self.line(record)


class ArchiveSink(LogEntryEncoder):
    """Appends LogEntry lines to hourly files under ``root``.

    Each file gets one ``write`` per batch under an exclusive ``flock`` with ``O_APPEND``, so
    several gateway processes can share one archive folder without interleaving lines.
    """

    def __init__(self, root: Path, *, project: str, log_id: str) -> None:
        super().__init__(project=project, log_id=log_id)
        self.root = root
        self._made: set[Path] = set()

    def write(self, lines: Sequence[Line]) -> None:
        """Append every line to the file of its hour."""
        by_hour: dict[str, list[bytes]] = defaultdict(list)
        for hour, line in lines:
            by_hour[hour].append(line)
        for hour, chunk in by_hour.items():
            path = archive_path(self.root, self.log_id, hour)
            if path.parent not in self._made:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(path.parent)
            data = b"\n".join(chunk) + b"\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)


class BatchingLogger:
    """Queue in front of a sink, drained by one owned background task."""

    def __init__(
        self,
        sink: LogSink,
        metrics: Metrics,
        *,
        flush_interval: float,
        batch_size: int,
        queue_max: int,
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.queue_max = queue_max
        self._queue: deque[Line] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def put(self, record: Record) -> bool:
        """Accept a record without waiting; False (and counted) if the queue is full."""
        if len(self._queue) >= self.queue_max:
            self.metrics.log_dropped.inc()
            return False
        self._queue.append(self.sink.encode(record))
        if len(self._queue) >= self.batch_size:
            self._wake.set()
        return True

    def __len__(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="abgate-log-writer")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued now, in batches; on failure keep the batch and return."""
        while self._queue:
            n = min(self.batch_size, len(self._queue))
            batch = list(itertools.islice(self._queue, n))
            started = time.perf_counter()
            try:
                pending = self.sink.write(batch)
                blocked = time.perf_counter() - started  # the event loop waited this long
                if pending is not None:
                    await pending
            except Exception:
                self.metrics.log_errors.inc()
                log.exception("log sink write failed; will retry", extra={"records": n})
                return
            if blocked > SLOW_WRITE:
                log.warning(
                    "slow log write: is the archive on a local disk?",
                    extra={"records": n, "seconds": round(blocked, 3)},
                )
            for _ in range(n):
                self._queue.popleft()
            self.metrics.log_written.inc(n)
            await asyncio.sleep(0)  # let waiting requests run between batches
        self.metrics.log_queue.set(len(self._queue))

    async def aclose(self) -> None:
        """Stop the task and write every accepted record (retrying a few times)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for _ in range(5):
            await self.flush()
            if not self._queue:
                return
            await asyncio.sleep(0.2)
        log.error("log records lost at shutdown", extra={"records": len(self._queue)})
