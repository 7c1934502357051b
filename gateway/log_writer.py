"""Exposure and outcome logging: a batching writer, with an on-disk spool, in front of each sink.

A request encodes its record (one ``orjson`` call and a join, ~1 µs) and appends the line to an
in-memory queue; it never waits on a sink. A named background task writes the queue in batches
(``log_batch_size`` lines, or every ``log_flush_interval`` seconds). On shutdown every accepted
record is written, or left in the spool for the next start.

When a write fails, the lines that did not reach the sink are kept (``PartialWrite`` tells which
did, so a retry never writes a line twice), the sink is retried with exponential backoff (from
``flush_interval`` up to ``MAX_BACKOFF``), and meanwhile the queue is spilled to a bounded
on-disk spool (gateway/spool.py) rather than growing in memory. The queue is spilled as well
when the sink cannot keep up (more than ``SPILL_BATCHES`` batches waiting). The spool is
replayed, oldest segment first and before the queue, as soon as the sink takes writes again, so
records reach the sink in the order they were accepted. Failures are logged once a minute with
their count, not once per batch.

When even the spool is full (or its disk refuses it), ``spool_full`` decides: ``shed`` keeps
serving and drops records once the memory queue is full too (counted); ``refuse`` stops
accepting experiment traffic (gateway/serving.py answers 503) and events until the spool takes
records again, so that nothing served goes unlogged.

``LogFanOut`` feeds several sinks (``ABGATE_LOG_SINK=archive,stdout``), each with its own queue,
spool and backoff: a failing sink delays only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

from experiments.settings import Settings
from gateway.metrics import Metrics
from gateway.sinks import ArchiveSink, Line, LogRecord, LogSink, PartialWrite
from gateway.spool import Spool, SpoolFull
from gateway.throttle import Throttled

log = logging.getLogger("abgate.gateway")

SLOW_WRITE = 0.05  # seconds; a batch write slower than this blocked the event loop noticeably
MAX_BACKOFF = 30.0  # seconds between retries of a failing sink, at most
SPILL_BATCHES = 10  # batches waiting in memory before the queue is spilled to the spool

SpoolPolicy = Literal["shed", "refuse"]


class BatchingLogger:
    """Queue in front of one sink, drained by one owned background task."""

    def __init__(
        self,
        sink: LogSink,
        metrics: Metrics,
        *,
        flush_interval: float,
        batch_size: int,
        queue_max: int,
        spool: Spool | None = None,
        spool_full: SpoolPolicy = "shed",
        name: str = "archive",
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.sink = sink
        self._encode = sink.encode
        self.metrics = metrics
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.queue_max = queue_max
        self.spill_at = min(queue_max, SPILL_BATCHES * batch_size)
        self.spool = spool
        self.refuse = spool_full == "refuse"
        self.name = name
        self.max_backoff = max_backoff
        self.last_error: str | None = None  # of the current failure; None while healthy
        self.full = False  # the last spill found no room: the policy applies
        self._queue: deque[Line] = deque()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # one flush at a time: a batch is never sent twice
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._backoff = flush_interval
        self._retry_at = 0.0
        self._errors = Throttled(
            log, "log sink write failed; records kept and retried", level=logging.ERROR
        )
        self._spill_errors = Throttled(log, "log spool cannot take records", level=logging.ERROR)
        self._spool_records = metrics.log_spool_records.labels(name)
        self._spool_bytes = metrics.log_spool_bytes.labels(name)
        self._spool_full = metrics.log_spool_full.labels(name)
        self._spooled = metrics.log_spooled.labels(name)

    @property
    def accepting(self) -> bool:
        """False while records are refused (spool full under ``spool_full=refuse``)."""
        return not (self.refuse and self.full)

    def put(self, record: LogRecord, *, admitted: bool = False) -> bool:
        """Accept a record without waiting; False (and counted) if it is refused or dropped.

        ``admitted``: the record of a request let in while ``accepting`` (its answer is already
        given): it is never refused, only dropped at ``queue_max``."""
        if self.refuse and self.full and not admitted:
            self.metrics.log_refused.inc()
            return False
        return self.admit(record)

    def admit(self, record: LogRecord) -> bool:
        """``put(record, admitted=True)``, in one call fewer (the request path's)."""
        queue = self._queue
        if len(queue) >= self.queue_max:
            self.metrics.log_dropped.inc()
            return False
        queue.append(self._encode(record))
        if len(queue) >= self.batch_size:
            self._wake.set()
        return True

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def spooled(self) -> int:
        """Records waiting in the spool."""
        return self.spool.records if self.spool is not None else 0

    def problem(self) -> str | None:
        """What is wrong with this sink, for /readyz; None when all is well."""
        if self.last_error is None and not self.full:
            return (
                f"{self.name}: replaying {self.spooled} spooled records" if self.spooled else None
            )
        state = f"failing ({self.last_error})" if self.last_error else "recovering"
        if self.full:
            room = "spool full" if self.spool is not None else "no spool"
            policy = (
                "refusing experiment traffic"
                if self.refuse
                else "shedding records once memory is full"
            )
            return f"{self.name}: {state}; {room}, {policy} ({len(self)} records in memory)"
        return f"{self.name}: {state}; {self.spooled} records spooled"

    def start(self) -> None:
        """Claim a spool slot (replaying what a previous process left) and start the writer."""
        if self.spool is not None:
            try:
                self.spool.open()
            except OSError as exc:
                log.error(
                    "log spool unavailable; records stay in memory while the sink fails",
                    extra={"sink": self.name, "error": str(exc)},
                )
                self.spool = None
            else:
                if self.spool.records:
                    log.warning(
                        "replaying records a previous process left in the spool",
                        extra={"sink": self.name, "records": self.spool.records},
                    )
        self._gauges()
        self._task = asyncio.create_task(self._run(), name=f"abgate-log-writer-{self.name}")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            if self._closing:
                return
            if time.monotonic() < self._retry_at:
                async with self._flushing:
                    self._spill()  # backing off: keep memory small, leave the sink alone
                    self._gauges()
                continue
            await self.flush()

    async def flush(self) -> bool:
        """Write the spool, then the queue, to the sink; on failure spill the queue to the
        spool. True when everything reached the sink."""
        async with self._flushing:
            ok = await self._drain()
            if ok:
                self.full = False
            else:
                self._spill()
            self._gauges()
            return ok

    async def _drain(self) -> bool:
        spool, queue = self.spool, self._queue
        while True:
            if spool is not None and len(spool):
                if not await self._replay_oldest(spool):
                    return False
            elif queue:
                n = min(self.batch_size, len(queue))
                left = await self._write(list(itertools.islice(queue, n)))
                for _ in range(n):
                    queue.popleft()
                if left:
                    queue.extendleft(reversed(left))
                    return False
            else:
                return True
            if len(queue) > self.spill_at:
                self._spill()  # the sink cannot keep up: hold the excess on disk, not in memory
            await asyncio.sleep(0)  # let waiting requests run between batches

    async def _replay_oldest(self, spool: Spool) -> bool:
        try:
            lines = spool.oldest()
        except OSError as exc:
            self._failed(exc)
            return False
        left = await self._write(lines)
        try:
            if not left:
                spool.pop_oldest()
            elif len(left) < len(lines):
                spool.replace_oldest(left)
        except OSError as exc:  # the lines written would be replayed again: say so
            log.error(
                "log spool segment not updated after replay; its records may be written twice",
                extra={"sink": self.name, "error": str(exc)},
            )
        return not left

    async def _write(self, lines: list[Line]) -> list[Line]:
        """Write a batch; the lines that did not reach the sink (empty: all did)."""
        started = time.perf_counter()
        try:
            pending = self.sink.write(lines)
            blocked = time.perf_counter() - started  # the event loop waited this long
            if pending is not None:
                await pending
        except PartialWrite as exc:
            self.metrics.log_written.inc(len(exc.written))
            self._failed(exc.cause)
            return [line for i, line in enumerate(lines) if i not in exc.written]
        except Exception as exc:
            self._failed(exc)
            return lines
        if blocked > SLOW_WRITE:
            log.warning(
                "slow log write: is the archive on a local disk?",
                extra={"sink": self.name, "records": len(lines), "seconds": round(blocked, 3)},
            )
        self.metrics.log_written.inc(len(lines))
        if self.last_error is not None:
            log.warning("log sink writes again", extra={"sink": self.name})
            self.last_error = None
            self._backoff = self.flush_interval
            self._retry_at = 0.0
        return []

    def _failed(self, exc: BaseException) -> None:
        self.metrics.log_errors.inc()
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)
        self._errors.note(
            self.last_error,
            sink=self.name,
            queued=len(self._queue),
            spooled=self.spooled,
            retry_in=round(self._retry_at - time.monotonic(), 3),
        )

    def _spill(self) -> None:
        """Move the queue to the spool, in batches, oldest first; ``full`` if it has no room."""
        queue = self._queue
        if not queue:
            self.full = False
            return
        if self.spool is None:
            self.full = True
            return
        while queue:
            n = min(self.batch_size, len(queue))
            try:
                self.spool.append(list(itertools.islice(queue, n)))
            except (SpoolFull, OSError) as exc:
                self.full = True
                self._spill_errors.note(
                    f"{type(exc).__name__}: {exc}", sink=self.name, queued=len(queue)
                )
                return
            for _ in range(n):
                queue.popleft()
            self._spooled.inc(n)
        self.full = False

    def _gauges(self) -> None:
        spool = self.spool
        self._spool_records.set(spool.records if spool is not None else 0)
        self._spool_bytes.set(spool.bytes if spool is not None else 0)
        self._spool_full.set(1 if self.full else 0)
        # each worker's own total, for --workers (livesum): scrapes reach one worker only
        self.metrics.set_queued(self.name, len(self._queue))
        self.metrics.sync_exposures()  # for --workers, whose scrapes reach one worker only

    async def aclose(self) -> None:
        """Stop the task and write every accepted record (retrying a few times); what the sink
        does not take stays in the spool for the next start."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for _ in range(5):
            if await self.flush():
                break
            await asyncio.sleep(0.2)
        if self._queue:
            log.error(
                "log records lost at shutdown", extra={"sink": self.name, "records": len(self)}
            )
        if self.spool is not None:
            if self.spool.records:
                log.warning(
                    "log records left in the spool for the next start",
                    extra={"sink": self.name, "records": self.spool.records},
                )
            self.spool.close()


class LogFanOut:
    """Every record to every sink, each through its own ``BatchingLogger``."""

    admit: Callable[[LogRecord], bool]  # put(record, admitted=True), in one call fewer

    def __init__(self, loggers: Sequence[BatchingLogger]) -> None:
        self.loggers = tuple(loggers)
        self.admit = self.loggers[0].admit if len(self.loggers) == 1 else self._admit_all

    def put(self, record: LogRecord, *, admitted: bool = False) -> bool:
        """Queue the record for every sink; False if any refused or dropped it."""
        ok = True
        for logger in self.loggers:
            ok = logger.put(record, admitted=admitted) and ok
        return ok

    def _admit_all(self, record: LogRecord) -> bool:
        ok = True
        for logger in self.loggers:
            ok = logger.admit(record) and ok
        return ok

    @property
    def accepting(self) -> bool:
        """False while any sink refuses records (``ABGATE_SPOOL_FULL=refuse``)."""
        for logger in self.loggers:  # noqa: SIM110 (no generator: asked once per experiment request)
            if not logger.accepting:
                return False
        return True

    def status(self) -> str:
        """``ok``, or what is wrong with which sink (for /readyz)."""
        problems = [p for p in (logger.problem() for logger in self.loggers) if p is not None]
        return "; ".join(problems) or "ok"

    def __len__(self) -> int:
        return sum(len(logger) for logger in self.loggers)

    def start(self) -> None:
        """Start every writer."""
        for logger in self.loggers:
            logger.start()

    async def aclose(self) -> None:
        """Write (or spool) everything accepted, sink by sink."""
        for logger in self.loggers:
            await logger.aclose()


def build_sinks(settings: Settings) -> dict[str, LogSink]:
    """The sinks that ``settings.log_sink`` names, by name."""
    sinks: dict[str, LogSink] = {}
    for name in settings.log_sinks:
        if name == "cloud-logging":
            from gateway.cloud_logging import CloudLoggingSink

            sinks[name] = CloudLoggingSink(
                project=settings.gcp_project,
                log_id=settings.log_id,
                endpoint=settings.cloud_logging_endpoint,
            )
        elif name == "stdout":
            from gateway.stdout_sink import StdoutSink

            sinks[name] = StdoutSink(log_id=settings.log_id)
        else:
            sinks[name] = ArchiveSink(
                settings.archive_dir, project=settings.gcp_project, log_id=settings.log_id
            )
    return sinks


def build_log(
    settings: Settings, metrics: Metrics, sinks: dict[str, LogSink] | None = None
) -> LogFanOut:
    """One ``BatchingLogger`` per sink (default: ``build_sinks``), each with its spool."""
    loggers = []
    for name, sink in (sinks or build_sinks(settings)).items():
        spool = None
        if settings.spool_max_mb > 0:
            spool = Spool(
                settings.spool_folder / name, max_bytes=int(settings.spool_max_mb * 1024 * 1024)
            )
        loggers.append(
            BatchingLogger(
                sink,
                metrics,
                flush_interval=settings.log_flush_interval,
                batch_size=settings.log_batch_size,
                queue_max=settings.log_queue_max,
                spool=spool,
                spool_full=settings.spool_full,
                name=name,
            )
        )
    return LogFanOut(loggers)
