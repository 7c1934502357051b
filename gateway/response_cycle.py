"""Each answer's way to the socket: ``GatewayCycle``, uvicorn's request/response cycle with a
cheaper ``send``.

py-spy put uvicorn's ``RequestResponseCycle.send`` (header block and socket write) at 27–45% of
a gateway request's samples, the largest single item. The bytes sent are uvicorn's
(tests/gateway/test_server.py serves one app on both and compares them); docs/benchmarks.md,
"The response path", has the measurements.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))


def check_headers(names: list[bytes], values: list[bytes]) -> None:
    """Refuse the headers ``names``/``values`` as uvicorn refuses them (``RuntimeError``).

    uvicorn searches each name for a byte outside a token (``HEADER_RE``: controls, separators,
    space; so no ``:`` and no line break) and each value for a control byte but tab
    (``HEADER_VALUE_RE``: so no CR or LF, hence no header injection). Both are classes of single
    bytes: a concatenation holds one exactly when one of its parts does, so one search over all
    names and one over all values refuse exactly what uvicorn's two searches per header refuse.
    """
    if HEADER_RE.search(b"".join(names)) or HEADER_VALUE_RE.search(b"".join(values)):
        raise RuntimeError("Invalid HTTP header name or value.")


class GatewayCycle(RequestResponseCycle):
    """uvicorn's request/response cycle (0.54) with a cheaper ``send``. What changed:

    - the answer's head (status line and headers) goes out with the first body bytes, in one
      ``transport.write``, unless the body is chunked (a stream may take a while to start);
    - the server's default headers (``date``, ``server``) are encoded once per second, when
      uvicorn replaces them, not once per answer;
    - the app's headers are checked with one search over all names and one over all values,
      not two searches per header.
    """

    # One (default headers, their encoded block) for the process: uvicorn's server replaces
    # the list once per second (the date), so a changed list is a new object.
    _defaults: tuple[list[tuple[bytes, bytes]] | None, bytes] = (None, b"")
    _head: bytes | None = None  # the head held until the first body message

    def _default_block(self) -> bytes:
        given, block = GatewayCycle._defaults
        if given is not self.default_headers:
            names = [name.lower() for name, _ in self.default_headers]
            values = [value for _, value in self.default_headers]
            check_headers(names, values)
            block = b"".join([b"%s: %s\r\n" % nv for nv in zip(names, values, strict=True)])
            GatewayCycle._defaults = (self.default_headers, block)
        return block

    def _start(self, message: Any) -> bytes:
        """The head of the answer ``message`` starts, with the framing it chose recorded."""
        status = message["status"]
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status,
            )
        lines = []
        names = []
        values = []
        close = False
        for name, value in message.get("headers", ()):
            name = name.lower()
            lines.append(b"%s: %s\r\n" % (name, value))
            names.append(name)
            values.append(value)
            if name not in _FRAMING:
                continue
            if name == b"content-length":
                if self.chunked_encoding is None:
                    self.expected_content_length = int(value)
                    self.chunked_encoding = False
            elif name == b"transfer-encoding":
                if value.lower() == b"chunked":
                    self.expected_content_length = 0
                    self.chunked_encoding = True
            elif b"close" in [token.lower().strip() for token in value.split(b",")]:
                self.keep_alive = False
                close = True
        check_headers(names, values)
        head = [STATUS_LINE[status], self._default_block(), *lines]
        if not self.keep_alive and not close:
            head.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        return b"".join(head)

    async def send(self, message: Any) -> None:
        """uvicorn's ``send``, with the head written along with the first body bytes."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{kind}'."
                )
            self.response_started = True
            self.waiting_for_100_continue = False
            started = self._start(message)
            if self.chunked_encoding:
                self.transport.write(started)
            else:
                self._head = started
            return
        if self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}' sent, after response already completed."
            )
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        head, self._head = self._head, None
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            data = head or b""
        elif self.chunked_encoding:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            data = head + body if head is not None else body
        if data:
            self.transport.write(data)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
