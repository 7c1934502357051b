"""A log sink that writes records as structured JSON lines on standard output.

On Cloud Run (and GKE) the logging agent turns each JSON line a container prints into a
LogEntry whose ``jsonPayload`` is the object, less the fields it treats specially: ``severity``,
``time`` (RFC 3339), ``logging.googleapis.com/insertId`` and ``logging.googleapis.com/labels``.
So a line here is the record's payload with those four fields added: the entry's
``jsonPayload`` is exactly the payload DESIGN.md defines, its ``insertId`` the event id (Cloud
Logging drops a second entry with the same insertId and timestamp), its timestamp the record's.
A log sink routes entries with ``labels.abgate_log="abgate-events"`` (the log id) to BigQuery or
Cloud Storage; the log name is the platform's (``run.googleapis.com/stdout``), not ours.

The gateway's own diagnostics go to stderr, so stdout carries only records. A write cut short
(a closed pipe) reports the lines that went out (``PartialWrite``) and ends the torn line
with a newline before the next write, so the agent sees one bad line, not two records fused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import orjson

from gateway.sinks import Line, LogRecord, PartialWrite, payload_json


class StdoutSink:
    """Records as JSON lines on file descriptor ``fd`` (standard output)."""

    def __init__(self, *, log_id: str, fd: int = 1) -> None:
        self.fd = fd
        self._head = b'{"severity":"INFO","logging.googleapis.com/labels":' + orjson.dumps(
            {"abgate_log": log_id}
        )
        self._torn = False  # the last write stopped inside a line

    def encode(self, record: LogRecord) -> Line:
        """The record's hour and its line."""
        payload = payload_json(record)
        line = b"".join(
            (
                self._head,
                b',"logging.googleapis.com/insertId":',
                orjson.dumps(record.event_id),
                b',"time":',
                orjson.dumps(record.ts),
                b",",
                payload[1:],  # the payload's fields, after the special ones
            )
        )
        return record.ts[:13], line

    def write(self, lines: Sequence[Line]) -> None:
        """Write every line, or raise PartialWrite naming those that went out whole."""
        ends = []
        size = 1 if self._torn else 0
        for _, line in lines:
            size += len(line) + 1
            ends.append(size)
        data = (b"\n" if self._torn else b"") + b"".join(line + b"\n" for _, line in lines)
        sent = 0
        try:
            while sent < len(data):
                sent += os.write(self.fd, data[sent:])
        except OSError as exc:
            prefix = 1 if self._torn else 0
            if sent >= prefix:
                self._torn = sent > prefix and sent not in ends
            raise PartialWrite([i for i, end in enumerate(ends) if end <= sent], exc) from exc
        self._torn = False
