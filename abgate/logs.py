"""Structured logging: one JSON object per line on stderr, in the form Cloud Logging reads.

Cloud Logging (Cloud Run's agent, or any collector reading stderr) lifts these fields out of
a JSON line into the LogEntry: ``severity``, ``time``, ``message``, and
``logging.googleapis.com/trace``/``spanId``/``trace_sampled``, which tie a line to the request's
trace. The trace comes from the request's ``X-Cloud-Trace-Context`` header (or W3C
``traceparent``), picked up by ``TraceContext``, an ASGI wrapper around the app.

References: https://cloud.google.com/logging/docs/structured-logging (special JSON fields).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}

TRACE = "logging.googleapis.com/trace"
SPAN = "logging.googleapis.com/spanId"
SAMPLED = "logging.googleapis.com/trace_sampled"

# (trace resource name, span id or None, sampled) of the request being handled, if it has one.
_trace: contextvars.ContextVar[tuple[str, str | None, bool] | None] = contextvars.ContextVar(
    "abgate_trace", default=None
)


def parse_trace_header(
    cloud: str | None, traceparent: str | None, project: str
) -> tuple[str, str | None, bool] | None:
    """The trace of a request from ``X-Cloud-Trace-Context`` (``TRACE/SPAN;o=1``, span in
    decimal) or else ``traceparent`` (``00-TRACE-SPAN-FLAGS``, hex): ``(projects/P/traces/T,
    span as 16 hex digits or None, sampled)``; None when neither header is usable."""
    if cloud:
        head, _, options = cloud.partition(";")
        trace, _, span = head.partition("/")
        trace = trace.strip().lower()
        if len(trace) == 32 and all(c in "0123456789abcdef" for c in trace):
            span_hex = f"{int(span):016x}" if span.isdigit() and int(span) < 2**64 else None
            return f"projects/{project}/traces/{trace}", span_hex, options.strip() == "o=1"
    if traceparent:
        parts = traceparent.strip().lower().split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
            try:
                int(parts[1], 16), int(parts[2], 16)
                sampled = bool(int(parts[3], 16) & 1)
            except ValueError:
                return None
            return f"projects/{project}/traces/{parts[1]}", parts[2], sampled
    return None


class TraceContext:
    """ASGI wrapper: while a request carrying a trace header runs, log lines carry its trace.

    Pure ASGI (no Starlette middleware stack): one scan of the request's headers, and nothing
    at all for requests without the header.
    """

    def __init__(self, app: Any, project: str) -> None:
        self.app = app
        self.project = project

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cloud = parent = None
        for name, value in scope["headers"]:
            if name == b"x-cloud-trace-context":
                cloud = value.decode("latin-1")
            elif name == b"traceparent":
                parent = value.decode("latin-1")
        trace = parse_trace_header(cloud, parent, self.project) if cloud or parent else None
        if trace is None:
            await self.app(scope, receive, send)
            return
        token = _trace.set(trace)
        try:
            await self.app(scope, receive, send)
        finally:
            _trace.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as a JSON line: time, severity, logger, message, trace, extra fields,
    exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            # RFC 3339 in UTC: Cloud Logging takes it as the entry's timestamp.
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace = _trace.get()
        if trace is not None:
            out[TRACE] = trace[0]
            if trace[1] is not None:
                out[SPAN] = trace[1]
            out[SAMPLED] = trace[2]
        for k, v in record.__dict__.items():
            if k not in _STANDARD:
                out[k] = v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    """Send every log record to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
