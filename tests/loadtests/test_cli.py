"""``abgate loadtest`` end to end against a stub server in its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import orjson
import pytest
from typer.testing import CliRunner

from abgate.cli import app
from loadtests.stub_server import StubServer


@pytest.fixture
def server_in_thread() -> Iterator[StubServer]:
    loop = asyncio.new_event_loop()
    server = StubServer()
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(server.stop())
    loop.close()


def test_loadtest_prints_a_json_report(server_in_thread: StubServer) -> None:
    args = ["loadtest", "--url", server_in_thread.url, "--rate", "100", "--duration", "0.5"]
    result = CliRunner().invoke(app, [*args, "--warmup", "0", "--json", "--scenario", "hot"])

    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.output)
    assert doc["mode"] == "open"
    assert doc["statuses"] == {"200": 50}


def test_loadtest_closed_loop_prints_a_table(server_in_thread: StubServer) -> None:
    args = ["loadtest", "--url", server_in_thread.url, "--closed-loop", "--concurrency", "2"]
    result = CliRunner().invoke(app, [*args, "--duration", "0.3", "--warmup", "0"])

    assert result.exit_code == 0, result.output
    assert "closed loop, 2 workers" in result.output


def test_loadtest_exits_1_when_requests_fail() -> None:
    args = ["loadtest", "--url", "http://127.0.0.1:9/v1/recommendations", "--rate", "10"]
    result = CliRunner().invoke(app, [*args, "--duration", "0.2", "--warmup", "0", "--json"])

    assert result.exit_code == 1
    assert orjson.loads(result.output)["errors"] == {"ConnectError": 2}


def test_bad_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["loadtest", "--url", "https://example.org/x"])

    assert result.exit_code == 2
