"""The HTTP server around the app: uvicorn with httptools, plus the bounds uvicorn lacks.

uvicorn closes idle keep-alive connections but never a request that stalls: a client that sends
half its headers, or a ``Content-Length`` and then no body, held a connection (and a task
awaiting the body) for as long as it liked. ``GatewayHttpProtocol`` adds:

- a header timeout: from the connection (or the first byte of the next request on a kept-alive
  one) until the headers are complete;
- a body timeout: from the end of the headers until the whole body has arrived;
  either one expiring closes the connection;
- a concurrency limit: with ``max_concurrency`` requests in flight, a new request is answered at
  once with ``503 overloaded`` and ``Retry-After: 1`` (problem+json), and its connection
  closed, before any of the app's work. Idle connections do not count (the timeouts bound them;
  the process's file-descriptor limit bounds how many can exist).

- at most ``MAX_PIPELINED`` pipelined requests queued per connection;
- a write timeout for slow *readers*: when a client stops reading and the socket buffer fills
  (uvicorn pauses writing), the connection is closed unless writing resumes within the body
  timeout. An answer that fits the buffer is handed to the kernel and the connection falls
  under the keep-alive timeout. docs/operators.md has the measurements.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from experiments.settings import Settings
from gateway.errors import Overloaded
from gateway.http import PROBLEM_JSON

# Pipelined requests parsed ahead of the one being answered, per connection. uvicorn parses a
# whole read (up to 256 KiB) at once, so 3,000 small pipelined requests became 3,000 queued
# request objects (~9 MB) per connection; beyond this many the connection is closed.
MAX_PIPELINED = 16

_OVERLOADED = orjson.dumps(
    Overloaded("the gateway is at its concurrency limit; retry shortly").to_problem("")
)


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    """The answer at the concurrency limit: no body read, connection closed."""
    body = _OVERLOADED.replace(b'"instance":""', b'"instance":' + orjson.dumps(scope["path"]))
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", b"%d" % len(body)),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body timeouts and a fast 503 at the limit."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        body_timeout: float,
        max_concurrency: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_concurrency = max_concurrency
        self._deadline: asyncio.TimerHandle | None = None
        self._stuck: asyncio.TimerHandle | None = None
        self._overflow = False

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._stuck is not None:
            self._stuck.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        # The client is not reading and the socket buffer is full: give it body_timeout.
        super().pause_writing()
        if self._stuck is None:
            self._stuck = self.loop.call_later(self.body_timeout, self._expire)

    def resume_writing(self) -> None:
        if self._stuck is not None:
            self._stuck.cancel()
            self._stuck = None
        super().resume_writing()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        if self._overflow or len(self.pipeline) >= MAX_PIPELINED:
            # Stop taking requests from this connection: the ones queued are not answered
            # (RFC 9112 lets a pipelining client resend them), the one in flight is.
            self._overflow = True
            self.flow.pause_reading()
            self.transport.close()
            return
        self._arm(self.body_timeout)
        # Requests in flight, not connections: a burst of idle connections must not turn
        # away the requests of live ones (idle ones are bounded by the timeouts above).
        if len(self.tasks) < self.max_concurrency:
            super().on_headers_complete()
            return
        app, self.app = self.app, _overloaded
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_body(self, body: bytes) -> None:
        if not self._overflow:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._overflow:
            return
        self._disarm()
        super().on_message_complete()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options of ``abgate serve`` (and of tests that run a real server)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": functools.partial(
            GatewayHttpProtocol,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_concurrency=settings.max_concurrency,
        ),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "access_log": False,
        "proxy_headers": False,  # the gateway never reads client addresses; ~1% per request
        "log_config": None,
        "timeout_graceful_shutdown": 10,
    }
