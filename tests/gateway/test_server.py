"""gateway/server.py's response path on a real server: the bytes uvicorn would send, in fewer
writes, and no header injection."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http import Receive, Scope, Send
from gateway.server import GatewayHttpProtocol
from tests.gateway.helpers import exchange, gateway_protocol, request, served, without_date

LENGTH = b"content-length"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers chosen by path, covering every framing uvicorn's ``send`` handles."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    if path == "/fixed":
        body = b'{"ok":true}'
        headers = [(b"content-type", b"application/json"), (LENGTH, b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif path == "/pieces":  # a declared length sent in three body messages
        await send({"type": "http.response.start", "status": 200, "headers": [(LENGTH, b"6")]})
        for piece, more in ((b"ab", True), (b"", True), (b"cdef", False)):
            await send({"type": "http.response.body", "body": piece, "more_body": more})
    elif path == "/stream":  # no length: chunked
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one", b"", b"two"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/chunked":  # chunked by the app's own header, mixed case
        headers = [(b"Transfer-Encoding", b"Chunked"), (b"X-Mixed", b"Case")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x" * 100})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/close":  # the app closes the connection
        headers = [(LENGTH, b"2"), (b"connection", b"keep-alive, Close")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/fail":
        raise RuntimeError("the app failed before answering")
    elif path == "/inject-value":  # what a header echoing client input must never do
        headers = [(LENGTH, b"0"), (b"x-request-id", b"a\r\nset-cookie: stolen=1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/inject-lf":
        headers = [(LENGTH, b"0"), (b"x-request-id", b"a\nset-cookie: stolen=1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/inject-name":
        headers = [(LENGTH, b"0"), (b"x-a: b\r\nset-cookie", b"stolen=1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": [(LENGTH, b"0")]})
        await send({"type": "http.response.body", "body": b""})


EXCHANGES = {
    "fixed": request("/fixed"),
    "pieces": request("/pieces"),
    "stream": request("/stream"),
    "chunked": request("/chunked"),
    "empty": request("/empty"),
    "head": request("/fixed", "HEAD") + request("/stream", "HEAD"),
    "close-by-app": request("/close") + request("/fixed"),
    "close-by-client": request("/fixed", extra="connection: close\r\n") + request("/fixed"),
    "http-1.0": request("/fixed", version="1.0"),
    "posted body": b"POST /fixed HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc",
    "pipelined, every kind": b"".join(
        request(p) for p in ("/fixed", "/pieces", "/stream", "/chunked", "/empty", "/nope")
    ),
    "app error": request("/fail"),
    "injected value": request("/inject-value"),
    "injected line feed": request("/inject-lf"),
    "injected name": request("/inject-name"),
}


@pytest.mark.parametrize("name", EXCHANGES)
async def test_the_gateway_sends_the_bytes_uvicorn_sends(name: str) -> None:
    async with served(app, HttpToolsProtocol) as plain, served(app, gateway_protocol()) as ours:
        expected = await exchange(plain, EXCHANGES[name])
        got = await exchange(ours, EXCHANGES[name])
    assert without_date(got) == without_date(expected)
    assert got.count(b"HTTP/1.") == expected.count(b"HTTP/1.")


@pytest.mark.parametrize("path", ["/inject-value", "/inject-lf", "/inject-name"])
async def test_a_header_that_would_inject_a_line_is_refused_and_nothing_is_sent(path) -> None:
    async with served(app, gateway_protocol()) as port:
        answer = await exchange(port, request(path))
        after = await exchange(port, request("/fixed"))
    assert answer == b""  # the connection is closed before any byte of the answer
    assert after.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_client_request_id_is_echoed_only_when_printable(gateway_settings) -> None:
    from tests.e2e.helpers import serving

    async with serving(gateway_settings) as url, httpx.AsyncClient(base_url=url) as client:
        kept = await client.get("/healthz", headers={"x-request-id": "abc-1"})
        # httptools passes a tab and obs-text inside a value; neither is echoed.
        tab = await client.get("/healthz", headers={"x-request-id": "a\tb"})
        obs = await client.get("/healthz", headers={"x-request-id": b"caf\xc3\xa9"})
    assert kept.headers["x-request-id"] == "abc-1"
    assert tab.headers["x-request-id"] not in ("a\tb", "")
    assert obs.headers["x-request-id"].isascii()


class CountingTransport:
    """The server's real transport, counting ``write`` calls."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def test_an_answer_with_a_length_goes_out_in_one_write() -> None:
    writes: list[bytes] = []

    class Counting(GatewayHttpProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CountingTransport(transport, writes))  # type: ignore[arg-type]

    async with served(app, gateway_protocol(Counting)) as port:
        await exchange(port, request("/fixed"))
        fixed = list(writes)
        writes.clear()
        await exchange(port, request("/stream"))
        stream = list(writes)
    assert len(fixed) == 1 and fixed[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert fixed[0].endswith(b'\r\n\r\n{"ok":true}')
    assert len(stream) > 1  # a stream's head is not held back


async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() -> None:
    options = {"timeout_keep_alive": 0.3}
    async with served(app, gateway_protocol(), **options) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request("/fixed"))
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(11)
            rest = await asyncio.wait_for(reader.read(), 10)  # closed by the server
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and rest == b""


async def test_a_busy_connection_outlives_its_timeouts() -> None:
    # Each bound is 0.2 s; the connection's requests span ten times that: a deadline moved
    # request after request must not fire with the first one's time.
    options = {"timeout_keep_alive": 0.2}
    proto = gateway_protocol(timeouts=0.2)
    async with served(app, proto, **options) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 2.0
            answered = 0
            while loop.time() < end:
                writer.write(request("/fixed"))
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(11)
                answered += head.startswith(b"HTTP/1.1 200 OK\r\n")
                await asyncio.sleep(0.02)
        finally:
            writer.close()
    assert answered >= 20
