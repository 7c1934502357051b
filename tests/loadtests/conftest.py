"""A real local HTTP server per test: the stub server of loadtests, on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from loadtests.stub_server import StubServer


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    """A stub server answering 200 at once, on this test's event loop."""
    server = StubServer()
    await server.start()
    yield server
    server.resume()
    await server.stop()
