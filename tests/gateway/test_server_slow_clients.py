"""gateway/server.py against slow and misbehaving clients: flow control, the moving deadline,
disconnects, pipelining.

Each test runs on both event loops (uvloop serves ``abgate serve``; pytest's loop is asyncio's):
writing, closing and aborting differ between them. No test's server may log a warning or an
error. Where plain uvicorn should behave alike (flow control), it is served the same exchange
and its bytes compared. The timeouts under test are ``T`` seconds; the tests wait for the
server to act within a generous ``BOUND`` and never assert how fast it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
import struct
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import uvloop
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http import Receive, Scope, Send
from gateway.server import MAX_PIPELINED, GatewayHttpProtocol
from tests.gateway.helpers import exchange, request, served, without_date

Scenario = Coroutine[Any, Any, Any]
LOOPS: dict[str, Callable[[Scenario], Any]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}

T = 0.2  # a timeout under test
LONG = 60.0  # a timeout that must not be what closes the connection
BOUND = 20.0  # how long a test waits for the server to act
CHUNK = 64 * 1024
CHUNKS = 64  # a 4 MiB answer: many times what the two socket buffers below hold
SNDBUF = 32 * 1024  # the server's, fixed: the kernel would grow it to megabytes
RCVBUF = 4 * 1024  # the client's
BIG = b"".join(bytes([65 + i % 26]) * CHUNK for i in range(CHUNKS))
FIXED = b'{"ok":true}'
TRICKLED = b"GET /fixed HTTP/1.1\r\nhost: t\r\nx-slow: " + b"a" * 1000  # never ends in BOUND


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Any:
    """Run a scenario on the parameter's event loop; then no warning or error was logged."""

    def run(scenario: Scenario) -> Any:
        result = LOOPS[request.param](scenario)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        return result

    return run


class Watch:
    """The first connection a server accepts (the client under test) as its protocol saw it;
    later ones (bystanders) are served alike, unwatched."""

    def __init__(self) -> None:
        self.protocols: list[Any] = []
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        self.lost = asyncio.Event()
        self.queued = asyncio.Event()  # a request waits behind the one being answered

    def protocol(self, base: type[HttpToolsProtocol], **options: float) -> Any:
        """``base`` with ``options``, watched."""
        watch = self

        class Watched(base):  # type: ignore[valid-type,misc]
            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
                watch.protocols.append(self)
                super().connection_made(transport)

            def on_headers_complete(self) -> None:
                super().on_headers_complete()
                if self is watch.protocols[0] and self.pipeline:
                    watch.queued.set()

            def pause_writing(self) -> None:
                if self is watch.protocols[0]:
                    watch.paused.set()
                super().pause_writing()

            def resume_writing(self) -> None:
                if self is watch.protocols[0]:
                    watch.resumed.set()
                super().resume_writing()

            def connection_lost(self, exc: Exception | None) -> None:
                super().connection_lost(exc)
                if self is watch.protocols[0]:
                    watch.lost.set()

        return functools.partial(Watched, **options)

    def held(self) -> int:
        """Bytes the server holds for the client under test (not yet taken by the kernel)."""
        return int(self.protocols[0].transport.get_write_buffer_size())


def gateway(watch: Watch, header: float = T, body: float = T) -> Any:
    return watch.protocol(
        GatewayHttpProtocol, header_timeout=header, body_timeout=body, max_concurrency=100
    )


class App:
    """Answers by path, and marks what the tests wait for (``reached``)."""

    def __init__(self, watch: Watch | None = None) -> None:
        self.watch = watch
        self.marks: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.received: list[str] = []  # the types of the messages /fixed received
        self.release = asyncio.Event()  # lets /wait answer
        self.sent = 0  # chunks of /big sent

    async def reached(self, mark: str) -> None:
        await asyncio.wait_for(self.marks[mark].wait(), BOUND)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # accepted, then held until the client leaves
            await receive()
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        try:
            await self.answer(path, receive, send)
        finally:
            self.marks[f"{path} ended"].set()

    async def answer(self, path: str, receive: Receive, send: Send) -> None:
        if path == "/early":  # a refusal that does not read the body
            await send({"type": "http.response.start", "status": 401, "headers": [length(0)]})
            await send({"type": "http.response.body", "body": b""})
            return
        while True:
            message = await receive()
            self.received.append(message["type"])
            self.marks[f"{path} received"].set()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body"):
                break
        if path == "/big":  # CHUNKS body messages of CHUNK bytes, with a length
            await send({"type": "http.response.start", "status": 200, "headers": [length(BIG)]})
            for i in range(CHUNKS):
                body = BIG[i * CHUNK : (i + 1) * CHUNK]
                await send({"type": "http.response.body", "body": body, "more_body": True})
                self.sent += 1
            await send({"type": "http.response.body", "body": b""})
        elif path == "/fill":  # a chunked answer that ends once the server holds some of it
            assert self.watch is not None
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while not self.watch.held():
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            if path == "/wait":
                self.marks["/wait started"].set()
                await self.release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": [length(FIXED)]})
            await send({"type": "http.response.body", "body": FIXED})


def length(body: bytes | int) -> tuple[bytes, bytes]:
    return (b"content-length", b"%d" % (body if isinstance(body, int) else len(body)))


@contextlib.asynccontextmanager
async def connected(port: int) -> AsyncIterator[socket.socket]:
    """A client socket with a small receive buffer, which nothing reads unless the test does."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        yield sock
    finally:
        sock.close()


async def send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset rather than a FIN, as a crashed client's kernel does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Reader:
    """Reads answers from a client socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    async def more(self) -> None:
        """Wait for more bytes (fails at the end of the connection)."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), BOUND)
        if not data:
            raise EOFError
        self.buffer += data

    async def answer(self) -> bytes:
        """The next answer (it has a ``content-length``)."""
        while b"\r\n\r\n" not in self.buffer:
            await self.more()
        end = self.buffer.index(b"\r\n\r\n") + 4
        found = re.search(rb"content-length: (\d+)", self.buffer[:end])
        assert found is not None, bytes(self.buffer[:end])
        end += int(found[1])
        while len(self.buffer) < end:
            await self.more()
        answer = bytes(self.buffer[:end])
        del self.buffer[:end]
        return answer

    async def answers(self) -> list[bytes]:
        """The answers until the server closes the connection (a cut one fails)."""
        out = []
        with contextlib.suppress(EOFError, ConnectionResetError):
            while True:
                out.append(await self.answer())
        assert self.buffer == b""
        return out


async def closed_by_server(sock: socket.socket, bound: float = BOUND) -> bool:
    """Whether the server closes ``sock`` within ``bound`` seconds (what it sends meanwhile is
    dropped)."""
    try:
        async with asyncio.timeout(bound):
            while await asyncio.get_running_loop().sock_recv(sock, 1 << 16):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


async def trickle(sock: socket.socket, data: bytes, pace: float = 0.05) -> bool:
    """Send ``data`` a byte every ``pace`` seconds (then nothing) until the server closes the
    connection (True) or BOUND has passed (False)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + BOUND
    sent = 0
    while loop.time() < end:
        try:
            if sent < len(data):
                await send(sock, data[sent : sent + 1])
                sent += 1
            if not await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), pace):
                return True
        except TimeoutError:
            continue  # still open: the next byte
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


async def served_meanwhile(port: int) -> None:
    """Another client is answered at once."""
    answer = await exchange(port, request("/bystander"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(FIXED)


# Slow readers: flow control, and the write timeout


async def read_slowly(protocol: Callable[[Watch], Any]) -> list[bytes]:
    """A client asks for BIG and reads nothing until the server has paused, then reads it all
    and asks once more on the same connection; its answers."""
    watch = Watch()
    app = App()
    async with served(app, protocol(watch)) as port, connected(port) as sock:
        await send(sock, request("/big"))
        await asyncio.wait_for(watch.paused.wait(), BOUND)
        await served_meanwhile(port)
        # The app waits in ``send`` (its next chunk is not taken) and the server holds at most
        # a chunk beyond asyncio's high-water mark (the rest is in the socket buffers).
        assert app.sent < CHUNKS
        assert watch.held() <= HIGH_WATER_LIMIT + CHUNK
        reader = Reader(sock)
        answers = [await reader.answer()]
        await send(sock, request("/fixed"))
        answers.append(await reader.answer())
        assert watch.resumed.is_set() and not watch.lost.is_set()
        return answers


def test_a_client_that_stops_reading_pauses_the_answer_and_gets_all_of_it_later(run) -> None:
    uvicorn = run(read_slowly(lambda w: w.protocol(HttpToolsProtocol)))
    ours = run(read_slowly(lambda w: gateway(w, header=LONG, body=LONG)))
    assert ours[0].startswith(b"HTTP/1.1 200 OK\r\n") and ours[0].endswith(b"\r\n\r\n" + BIG)
    assert ours[1].startswith(b"HTTP/1.1 200 OK\r\n") and ours[1].endswith(FIXED)
    assert [without_date(a) for a in ours] == [without_date(a) for a in uvicorn]


@pytest.mark.parametrize(
    "raw",
    [request("/big"), request("/fill", extra="connection: close\r\n")],
    ids=["mid-answer", "as the server closes"],
)
def test_a_client_that_stops_reading_for_the_body_timeout_is_cut_off(run, raw) -> None:
    # A close waits for the client to take what the server holds: the connection has to be
    # aborted, whether the answer is under way or done and the connection closing.
    async def scenario() -> None:
        watch = Watch()
        app = App(watch)
        async with served(app, gateway(watch)) as port, connected(port) as sock:
            await send(sock, raw)
            await served_meanwhile(port)
            await asyncio.wait_for(watch.lost.wait(), BOUND)
            await app.reached(f"{raw.split()[1].decode()} ended")
            await served_meanwhile(port)

    run(scenario())


# Slow senders: the moving deadline


@pytest.mark.parametrize("case", ["first request", "kept-alive", "line break"])
def test_headers_that_trickle_are_cut_off_at_the_header_timeout(run, case) -> None:
    # A byte at a time, or one line break (which begins no request) on a kept-alive connection:
    # the header timeout runs from the first byte and no byte moves it.
    async def scenario() -> None:
        app = App()
        watch = Watch()
        async with (
            served(app, gateway(watch, body=LONG), timeout_keep_alive=LONG) as port,
            connected(port) as sock,
        ):
            if case != "first request":
                await send(sock, request("/fixed"))
                await Reader(sock).answer()
            trickled = asyncio.create_task(
                trickle(sock, b"\r\n" if case == "line break" else TRICKLED)
            )
            await served_meanwhile(port)
            assert await trickled
            await served_meanwhile(port)

    run(scenario())


def test_a_body_that_trickles_is_cut_off_at_the_body_timeout(run) -> None:
    async def scenario() -> None:
        app = App()
        watch = Watch()
        async with (
            served(app, gateway(watch, header=LONG), timeout_keep_alive=LONG) as port,
            connected(port) as sock,
        ):
            await send(sock, b"POST /fixed HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\n")
            trickled = asyncio.create_task(trickle(sock, b"{" * 1000))
            await served_meanwhile(port)
            assert await trickled
            await app.reached("/fixed ended")
            assert app.received[-1] == "http.disconnect"

    run(scenario())


def test_a_connection_answered_before_its_body_ended_is_idle_once_it_has(run) -> None:
    # A refusal that did not read the body; the rest of the body then arrives, and the
    # connection is an idle kept-alive one.
    async def scenario() -> None:
        app = App()
        watch = Watch()
        protocol = gateway(watch, header=LONG, body=LONG)
        async with served(app, protocol, timeout_keep_alive=T) as port, connected(port) as sock:
            await send(sock, b"POST /early HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nab")
            assert (await Reader(sock).answer()).startswith(b"HTTP/1.1 401 ")
            await send(sock, b"cde")
            assert await closed_by_server(sock)

    run(scenario())


def test_a_websocket_opened_on_a_kept_alive_connection_outlives_the_keep_alive_timeout(
    run,
) -> None:
    # An upgrade creates no request cycle of its own; the previous request's, complete, must
    # not read as "answered before its body ended" and arm the keep-alive timeout.
    upgrade = (
        b"GET /ws HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    )

    async def scenario() -> None:
        watch = Watch()
        async with (
            served(App(), gateway(watch), timeout_keep_alive=T) as port,
            connected(port) as sock,
        ):
            reader = Reader(sock)
            await send(sock, request("/fixed"))
            await reader.answer()
            await send(sock, upgrade)
            while b"\r\n\r\n" not in reader.buffer:
                await reader.more()
            assert reader.buffer.startswith(b"HTTP/1.1 101 ")
            assert not await closed_by_server(sock, bound=10 * T)

    run(scenario())


# Clients that leave


@pytest.mark.parametrize("leave", [socket.socket.close, reset], ids=["close", "reset"])
def test_a_client_gone_mid_body_is_told_to_the_app(run, leave) -> None:
    async def scenario() -> None:
        app = App()
        watch = Watch()
        async with served(app, gateway(watch, LONG, LONG)) as port, connected(port) as sock:
            await send(sock, b"POST /fixed HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{")
            await app.reached("/fixed received")
            leave(sock)
            await app.reached("/fixed ended")
            assert app.received == ["http.request", "http.disconnect"]
            await served_meanwhile(port)

    run(scenario())


@pytest.mark.parametrize("leave", [socket.socket.close, reset], ids=["close", "reset"])
@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "pipelined"])
def test_a_client_gone_mid_answer_ends_the_answer_quietly(run, leave, pipelined) -> None:
    # With a request pipelined behind it, the answer under way is not uvicorn's ``self.cycle``
    # (the newest request): it too must learn of the disconnect, or it writes to a closed
    # transport (uvloop raises; asyncio warns on every write).
    async def scenario() -> None:
        app = App()
        watch = Watch()
        raw = request("/big") + (request("/fixed") if pipelined else b"")
        async with served(app, gateway(watch, LONG, LONG)) as port, connected(port) as sock:
            await send(sock, raw)
            await asyncio.wait_for(watch.paused.wait(), BOUND)
            leave(sock)
            await asyncio.wait_for(watch.lost.wait(), BOUND)
            await app.reached("/big ended")
            await served_meanwhile(port)
        assert "/fixed ended" not in app.marks

    run(scenario())


# Pipelining


async def pipeline_slowly(protocol: Callable[[Watch], Any]) -> list[bytes]:
    """Three requests in one write, nothing read until the server has paused; the answers."""
    watch = Watch()
    app = App()
    async with served(app, protocol(watch)) as port, connected(port) as sock:
        await send(sock, request("/big") + request("/fixed") * 2)
        await asyncio.wait_for(watch.paused.wait(), BOUND)
        await served_meanwhile(port)
        assert "/fixed ended" not in app.marks  # answered in order: after /big
        reader = Reader(sock)
        return [await reader.answer() for _ in range(3)]


def test_requests_pipelined_by_a_slow_reader_are_answered_in_order(run) -> None:
    uvicorn = run(pipeline_slowly(lambda w: w.protocol(HttpToolsProtocol)))
    ours = run(pipeline_slowly(lambda w: gateway(w, LONG, LONG)))
    assert ours[0].endswith(b"\r\n\r\n" + BIG)
    assert ours[1].endswith(FIXED) and ours[2].endswith(FIXED)
    assert [without_date(a) for a in ours] == [without_date(a) for a in uvicorn]


def test_a_pipelined_request_is_not_timed_while_the_server_does_not_read(run) -> None:
    # A request queued behind an answer under way stops the server reading (until that answer
    # is done, once its app has read its own body). The client has sent the whole body, the
    # server has not read it: the body timeout must not run meanwhile.
    async def scenario() -> list[bytes]:
        app = App()
        watch = Watch()
        protocol = gateway(watch, header=T, body=T)
        async with served(app, protocol, timeout_keep_alive=LONG) as port, connected(port) as sock:
            await send(sock, request("/wait"))
            await app.reached("/wait started")
            await send(sock, b"POST /fixed HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nab")
            await asyncio.wait_for(watch.queued.wait(), BOUND)
            await send(sock, b"cde")
            await asyncio.sleep(5 * T)  # the body timeout passes (not a synchronisation)
            app.release.set()
            reader = Reader(sock)
            return [await reader.answer(), await reader.answer()]

    answers = run(scenario())
    assert [a.endswith(FIXED) for a in answers] == [True, True]


def test_a_connection_pipelining_too_many_requests_is_answered_once_then_closed(run) -> None:
    async def scenario() -> list[bytes]:
        app = App()
        watch = Watch()
        async with served(app, gateway(watch, LONG, LONG)) as port, connected(port) as sock:
            await send(sock, request("/fixed") * (MAX_PIPELINED + 4))
            return await Reader(sock).answers()

    answers = run(scenario())
    # The one in flight when the cap was passed is answered in full; the queued ones are not.
    assert 1 <= len(answers) < MAX_PIPELINED + 4
    assert all(a.startswith(b"HTTP/1.1 200 OK\r\n") and a.endswith(FIXED) for a in answers)
