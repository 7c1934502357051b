"""Log sinks: where encoded exposures and outcomes are written (the local archive here).

gateway/log_writer.py queues records in front of a sink and writes them in batches; this module
is the sink side. A sink writes a batch whole, or raises: ``PartialWrite`` says which lines of
the batch did reach it, so that a retry never writes one twice.

The batch is written on the event loop, not in a worker thread. Measured with the benchmark's
gateway (``python -m loadtests.benchmark``, docs/benchmarks.md): handing batches to a thread cost
~23 µs of CPU per exposure, because the thread and the event loop then fight over the GIL at
every system call, against ~11 µs for the whole exposure when written inline; a 1,000-line
batch (~0.5 MB) takes ~0.6 ms to append to a local disk's page cache. The archive folder must
therefore be on a local disk or tmpfs (as on Cloud Run), never a network mount; a write slower
than ``SLOW_WRITE`` seconds is logged as a warning.

``ArchiveSink`` writes Cloud Logging's Cloud Storage export layout (DESIGN.md, "The archive"):
``LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json``, one LogEntry JSON object per line. A file only
ever shows whole lines: a write cut short (disk full, quota) is truncated back to the offset
where it started, and a torn last line left by a writer that died mid-write is cut off by the
next writer (both under the file's lock).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections import defaultdict
from collections.abc import Awaitable, Collection, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Protocol

import orjson

from experiments import Record, archive_path
from gateway.exposure_json import EncodedExposure, _exposure

log = logging.getLogger("abgate.gateway")

TAIL_CHUNK = 64 * 1024
_HOUR, _LINE = itemgetter(0), itemgetter(1)


# An encoded record: the key of the object it goes to (the archive's hour) and its line.
Line = tuple[str, bytes]

# What a sink encodes: a record, or an exposure whose payload the request path encoded.
LogRecord = Record | EncodedExposure


def payload_json(record: LogRecord) -> bytes:
    """The record's ``jsonPayload`` as JSON (DESIGN.md, "Log records")."""
    if isinstance(record, EncodedExposure):
        return record.payload
    return orjson.dumps(record.as_payload())


class LogSink(Protocol):
    """Somewhere records are written durably.

    Both methods run on the event loop: ``encode`` for each record (it must be cheap), ``write``
    with a batch of encoded lines (it must only append locally; a sink that talks to a network
    service hands its batches to a thread of its own).
    """

    def encode(self, record: LogRecord) -> Line:
        """The record as written."""
        ...

    def write(self, lines: Sequence[Line]) -> Awaitable[None] | None:
        """Write every line or raise (``PartialWrite`` when some lines did reach the sink); a
        sink that sends over the network returns an awaitable (it must not block the event
        loop while it waits)."""
        ...


class PartialWrite(Exception):
    """Some lines of a batch reached the sink (``written``: their indices), the others did not."""

    def __init__(self, written: Collection[int], cause: BaseException) -> None:
        super().__init__(f"{len(written)} lines written, then {type(cause).__name__}: {cause}")
        self.written = frozenset(written)
        self.cause = cause


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
        if _exposure is not None:  # the same lines; an encoded exposure's in one C call
            self.encode = _exposure.LineEncoder(  # type: ignore[method-assign]
                self._head, self._middle, EncodedExposure, self._encode
            ).encode

    def line(self, record: LogRecord) -> bytes:
        """The LogEntry of one record as one JSON line (keys in the export's order)."""
        if isinstance(record, EncodedExposure):  # the gateway's own id and clock: no escaping
            ids = f'"{record.event_id}","timestamp":"{record.ts}"'.encode()
            return b"".join((self._head, ids, self._middle, record.payload, b"}"))
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

    def encode(self, record: LogRecord) -> Line:
        """The record's hour (``YYYY-MM-DDTHH``) and its line."""
        return self._encode(record)

    def _encode(self, record: LogRecord) -> Line:
        return record.ts[:13], self.line(record)


class ArchiveSink(LogEntryEncoder):
    """Appends LogEntry lines to hourly files under ``root``.

    Each file gets one ``write`` per batch under an exclusive ``flock`` with ``O_APPEND``, so
    several gateway processes can share one archive folder without interleaving lines.
    """

    def __init__(self, root: Path, *, project: str, log_id: str) -> None:
        super().__init__(project=project, log_id=log_id)
        self.root = root
        self.repaired = 0  # torn last lines cut off (left by a writer that died mid-write)
        self._made: set[Path] = set()

    def write(self, lines: Sequence[Line]) -> None:
        """Append every line to the file of its hour; raise PartialWrite if some hours' files
        were written before a failure (the failed file is left as it was)."""
        hours = set(map(_HOUR, lines))
        by_hour: dict[str, list[int]] = defaultdict(list)
        if len(hours) == 1:  # the usual batch: one hour, one file, no grouping per line
            by_hour[hours.pop()] = list(range(len(lines)))
        else:
            for i, (hour, _) in enumerate(lines):
                by_hour[hour].append(i)
        done: list[int] = []
        for hour, indices in by_hour.items():
            try:
                path = archive_path(self.root, self.log_id, hour)
                if path.parent not in self._made:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self._made.add(path.parent)
                chosen = (
                    list(map(_LINE, lines))
                    if len(indices) == len(lines)
                    else [lines[i][1] for i in indices]
                )
                chosen.append(b"")  # the last newline, without copying the batch again
                self._append(path, b"\n".join(chosen))
            except (OSError, ValueError) as exc:
                if done:
                    raise PartialWrite(done, exc) from exc
                raise
            done.extend(indices)

    def _append(self, path: Path, data: bytes) -> None:
        """Append ``data`` (whole lines) under the file's lock, or leave the file unchanged."""
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # read: the tail check
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            start = self._repair_tail(fd, path)
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError:
                os.ftruncate(fd, start)  # frees space: works on a full disk too
                raise
        finally:
            os.close(fd)

    def _repair_tail(self, fd: int, path: Path) -> int:
        """The file's size after cutting off a torn last line (one without its newline)."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        end = size
        while end > 0:
            start = max(0, end - TAIL_CHUNK)
            newline = os.pread(fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        os.ftruncate(fd, end)
        self.repaired += 1
        log.warning(
            "cut off a torn last line of an archive file",
            extra={"file": str(path), "bytes": size - end},
        )
        return end
