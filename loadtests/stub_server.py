"""A trivial HTTP/1.1 server (asyncio + httptools) that answers every request at once.

Two uses: measuring what the generator itself can sustain (run it in its own process:
``python -m loadtests.stub_server --port 8099``), and the generator's tests, which ``pause``
it to stall every answer and check that the stall shows in open-loop latencies.
"""

from __future__ import annotations

import argparse
import asyncio

import httptools

_BODY = b'{"items":[]}'


class _Protocol(asyncio.Protocol):
    def __init__(self, server: StubServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        self.server.requests += 1
        if self.server.paused:
            self.server.held.append(self)
        else:
            self.respond()

    def respond(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.server.response)


class StubServer:
    """Answers ``status`` with a small JSON body; ``pause()`` holds answers until ``resume()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, status: int = 200) -> None:
        self.host = host
        self.port = port
        self.requests = 0
        self.paused = False
        self.held: list[_Protocol] = []
        self.connections: set[_Protocol] = set()
        self.response = (
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(_BODY), _BODY)
        )
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The URL to send recommendations requests to."""
        return f"http://{self.host}:{self.port}/v1/recommendations"

    async def start(self) -> None:
        """Listen (on a free port when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Protocol(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            for protocol in list(self.connections):
                if protocol.transport is not None:
                    protocol.transport.close()
            await self._server.wait_closed()

    def pause(self) -> None:
        """Hold every answer from now on."""
        self.paused = True

    def resume(self) -> None:
        """Send the held answers and answer at once again."""
        self.paused = False
        held, self.held = self.held, []
        for protocol in held:
            protocol.respond()


async def _serve(host: str, port: int) -> None:
    server = StubServer(host, port)
    await server.start()
    print(f"stub server on {server.url}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    """``python -m loadtests.stub_server --port 8099``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    from loadtests.runner import run

    run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
