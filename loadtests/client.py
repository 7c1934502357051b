"""A lean HTTP/1.1 keep-alive client for the load generator: asyncio protocol + httptools.

Why not httpx or aiohttp: the generator shares two cores with the server it measures, so
every microsecond it spends per request is taken from the server. A protocol object per
connection, one pre-encoded request prefix and httptools' C parser keep the client's cost
per request a few microseconds (see docs/benchmarks.md for what it sustains).

One request in flight per connection (no pipelining), as a browser or a service would do.

Errors::

    ClientError
    ├── ConnectError       the connection could not be opened
    └── ConnectionLost     the server closed the connection before the response ended
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from time import perf_counter
from urllib.parse import urlsplit

import httptools


class ClientError(Exception):
    """A request got no HTTP response."""


class ConnectError(ClientError):
    """The connection could not be opened."""


class ConnectionLost(ClientError):
    """The server closed the connection before the response ended."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go, and the constant part of every request."""

    host: str
    port: int
    path: str
    prefix: bytes  # request line and headers up to ``Content-Length: ``

    @classmethod
    def from_url(cls, url: str, token: str | None = None, method: str = "POST") -> Target:
        """Parse ``http://host:port/path`` and pre-encode the request line and headers."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--url must be http://HOST[:PORT]/PATH, got {url!r}")
        port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = [
            f"{method} {path} HTTP/1.1",
            f"Host: {parts.hostname}:{port}",
            "Content-Type: application/json",
            "Accept: application/json",
        ]
        if token:
            headers.append(f"Authorization: Bearer {token}")
        prefix = ("\r\n".join(headers) + "\r\nContent-Length: ").encode()
        return cls(parts.hostname, port, path, prefix)


class _Protocol(asyncio.Protocol):
    """One connection; ``request`` sends and waits for the whole response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.body_bytes = 0
        self.closed = False
        self.keep_alive = True
        self.sent_at = 0.0

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionLost(f"bad HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionLost("connection closed by the server"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self.parser.get_status_code())
        if not self.keep_alive:
            self.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> asyncio.Future[int]:
        if self.closed or self.transport is None:
            raise ConnectionLost("connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.sent_at = perf_counter()
        self.transport.write(data)
        return self.waiter


class Connection:
    """A keep-alive connection to one target; re-opens itself after the server closes it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._protocol: _Protocol | None = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(
                _Protocol, self.target.host, self.target.port
            )
        except OSError as exc:
            raise ConnectError(
                f"cannot connect to {self.target.host}:{self.target.port}: {exc}"
            ) from exc
        return protocol

    async def request(self, body: bytes) -> int:
        """Send one request with ``body``; return the response status."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = self._protocol = await self._open()
        data = b"%s%d\r\n\r\n%s" % (self.target.prefix, len(body), body)
        try:
            return await protocol.send(data)
        except BaseException:
            # A cancelled or failed request leaves the connection in an unknown state.
            protocol.close()
            self._protocol = None
            raise

    def expire(self, now: float, timeout: float) -> None:
        """Fail the request in flight with ``TimeoutError`` if it was sent ``timeout`` ago.

        One watchdog calling this on every connection is far cheaper than a timer per
        request (``asyncio.timeout`` cost the generator 15% of its time).
        """
        p = self._protocol
        if p is not None and p.waiter is not None and now - p.sent_at > timeout:
            p._fail(TimeoutError())

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None
