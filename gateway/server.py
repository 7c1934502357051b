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
- a write timeout for slow *readers*: whatever the kernel's socket buffer does not take is held
  by the transport, writing pauses (the app's next ``send`` waits), and unless the client has
  taken all of it within the body timeout the connection is aborted (a close would wait for the
  client forever). This holds for a connection being closed too. docs/operators.md has the
  measurements.

The three timeouts (header, body, keep-alive) are one deadline per connection, moved as a
request proceeds; it stands still while the server itself is not reading (pipelined requests
wait for the answer under way). Each request's answer goes through ``GatewayCycle``
(gateway/response_cycle.py): uvicorn's response path, cheaper.
"""

from __future__ import annotations

import asyncio
import functools
import urllib.parse
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from experiments.settings import Settings
from gateway.errors import Overloaded
from gateway.http import PROBLEM_JSON
from gateway.response_cycle import GatewayCycle

# Pipelined requests parsed ahead of the one being answered, per connection. uvicorn parses a
# whole read (up to 256 KiB) at once, so 3,000 small pipelined requests became 3,000 queued
# request objects (~9 MB) per connection; beyond this many the connection is closed.
MAX_PIPELINED = 16

# Seconds uvicorn's supervisor (``--workers``) waits for a worker to answer its ping before it
# kills it, its boot included (the answering thread starts once the spawned interpreter has
# imported the gateway). uvicorn's 5 s: under load a worker took 8 s to import the gateway and
# every replacement was killed in turn. The ping is answered by a thread, so only a process
# whose interpreter is stuck fails it; a longer wait costs little.
WORKER_HEALTHCHECK = 60

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
        # The bound in force (header, body or keep-alive timeout) is a deadline, ``_due``; one
        # timer per connection checks it and follows it when it moved later. Moving a deadline
        # is an assignment: a timer started and cancelled for each bound of each request was
        # six timer operations per request (~1.4 µs per start and cancel with uvloop).
        self._due: float | None = None
        self._bound = 0.0  # the seconds of the bound in force
        self._idle = False  # the bound in force is the keep-alive timeout
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._stuck: asyncio.TimerHandle | None = None
        self._overflow = False
        # The cycle whose app runs (uvicorn's ``self.cycle`` is the newest request parsed, a
        # pipelined one behind it when there is one).
        self._answering: RequestResponseCycle | None = None

    def _arm(self, seconds: float) -> None:
        self._bound = seconds
        self._due = due = self.loop.time() + seconds
        if self._timer is None or self._timer_at > due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(due, self._check)
            self._timer_at = due

    def _disarm(self) -> None:
        self._due = None
        self._idle = False

    def _rest(self) -> None:
        """No request arriving and none being answered: the keep-alive timeout applies."""
        self._arm(self.timeout_keep_alive)
        self._idle = True

    def _check(self) -> None:
        self._timer = None
        if self._due is None:
            return
        if self.flow.read_paused:
            # The server stopped reading (requests pipelined behind an answer under way): the
            # client is not late. The bound restarts when reading resumes.
            self._due = max(self._due, self.loop.time() + self._bound)
        if self.loop.time() < self._due:  # moved since the timer started
            self._timer = self.loop.call_at(self._due, self._check)
            self._timer_at = self._due
            return
        self._expire()

    def _expire(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn's hook on every read: on an idle connection the next request has begun, its
        # headers are due. Not by ``on_message_begin`` alone: the parser skips a CRLF before a
        # request line without beginning a message, and the connection would have no bound.
        if self._idle:
            self._idle = False
            self._arm(self.header_timeout)

    def on_response_complete(self) -> None:
        # uvicorn's, with the keep-alive timeout as a deadline: it applies when no request is
        # under way (one whose headers or body are arriving is under its own bound).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.flow.read_paused and self._due is not None:
            self._arm(self._bound)  # reading resumes: the arriving request's bound restarts
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._answering = cycle
            self._start_asgi_task(cycle, app)
        elif self._due is None:
            self._rest()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Writing pauses as soon as the kernel's buffer is full and the transport holds any
        # bytes (not above asyncio's 64 KiB): the stuck timer then also bounds a connection
        # closed with bytes the client never takes, whose close would wait for it forever.
        transport.set_write_buffer_limits(high=0)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
        if self._stuck is not None:
            self._stuck.cancel()
        answering = self._answering
        if answering is not None and not answering.response_complete:
            # uvicorn tells only ``self.cycle``: behind pipelined requests, the app being
            # answered would go on writing to a closed transport (uvloop raises).
            answering.disconnected = True
            answering.message_event.set()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        # The client is not taking what the server sends: it has body_timeout to take it all.
        super().pause_writing()
        if self._stuck is None:
            self._stuck = self.loop.call_later(self.body_timeout, self._abort)

    def _abort(self) -> None:
        self._stuck = None
        self._disarm()
        self.transport.abort()

    def resume_writing(self) -> None:
        if self._stuck is not None:
            self._stuck.cancel()
            self._stuck = None
        super().resume_writing()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._due is None:  # the next request on a kept-alive connection
            self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        if self._overflow or len(self.pipeline) >= MAX_PIPELINED:
            # Stop taking requests from this connection: the ones queued are not answered
            # (RFC 9112 lets a pipelining client resend them), the one in flight is, and then
            # the connection closes. (A full pipeline means an answer is in flight.)
            self._overflow = True
            self.flow.pause_reading()
            self.pipeline.clear()
            if self._answering is not None and not self._answering.response_complete:
                self._answering.keep_alive = False
            else:
                self.transport.close()
            return
        self._arm(self.body_timeout)
        # uvicorn's on_headers_complete (0.54), with a GatewayCycle for the answer and
        # ``max_concurrency`` in place of uvicorn's ``limit_concurrency`` (which `abgate serve`
        # leaves unset). Requests in flight, not connections, count: a burst of idle
        # connections must not turn away the requests of live ones (the timeouts above bound
        # idle ones).
        scope = self.scope
        parser = self.parser
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        url = httptools.parse_url(self.url)
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = url.query or b""
        app = self.app if len(self.tasks) < self.max_concurrency else _overloaded
        existing = self.cycle
        self.cycle = GatewayCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        if existing is None or existing.response_complete:
            self._answering = self.cycle
            self._start_asgi_task(self.cycle, app)
        else:  # pipelined: answered after the ones before it
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, app))

    def on_body(self, body: bytes) -> None:
        if not self._overflow:
            super().on_body(body)

    def _upgrading(self) -> bool:
        return bool(self.parser.should_upgrade()) and self._should_upgrade()

    def on_message_complete(self) -> None:
        if self._overflow:
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and not self._upgrading():
            # Answered before its body ended (a refusal that did not read it): nothing is under
            # way now, and ``on_response_complete`` left the body's bound in force. (An upgrade
            # has no cycle of its own: ``self.cycle`` is the previous request's.)
            self._rest()
        else:
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
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK,
    }
