"""The Cloud Logging sink against a local HTTP endpoint that receives google-auth's real
requests (no network here): the body, the retry of a failed batch, the drop of a refused one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from google.auth.credentials import AnonymousCredentials

from experiments import Exposure
from gateway.cloud_logging import CloudLoggingSink
from gateway.log_writer import BatchingLogger, build_sinks
from gateway.metrics import Metrics
from gateway.sinks import ArchiveSink
from gateway.stdout_sink import StdoutSink
from tests.gateway.helpers import load_demo_data, running_app, settings_for, write_config


class Endpoint:
    """Records each POST; answers with the next status of ``statuses`` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.requests.append((self.path, dict(self.headers), body))
                status = endpoint.statuses.pop(0) if endpoint.statuses else 200
                reply = b"{}" if status == 200 else b'{"error": {"message": "no"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def entries(self) -> list[dict[str, object]]:
        return [e for _, _, body in self.requests for e in orjson.loads(body)["entries"]]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    thread = threading.Thread(target=ep.server.serve_forever, daemon=True)
    thread.start()
    yield ep
    ep.server.shutdown()
    ep.server.server_close()


def sink_at(endpoint: Endpoint) -> CloudLoggingSink:
    return CloudLoggingSink(
        project="shop-prod",
        log_id="abgate-events",
        endpoint=endpoint.url,
        credentials=AnonymousCredentials(),
    )


def exposure(n: int) -> Exposure:
    return Exposure(
        f"e{n}", "2026-01-02T03:00:00.000000Z", "x", "control", f"u{n}", "home", "m", "1",
        ("a",), 1, "cache", "r", False,
    )  # fmt: skip


async def test_served_exposures_and_outcomes_reach_cloud_logging_as_archive_entries(
    endpoint: Endpoint, pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir
) -> None:
    await load_demo_data(pg_dsn, schema)
    write_config(experiments_dir)
    settings = settings_for(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    sink = sink_at(endpoint)
    async with running_app(settings, sink=sink) as (_, client):
        served = await client.post(
            "/v1/recommendations", json={"surface": "home_top", "unit_id": "u7", "limit": 3}
        )
        sent = await client.post("/v1/events", json={"unit_id": "u7", "name": "purchase"})
    assert served.status_code == 200 and sent.status_code == 202
    path, headers, body = endpoint.requests[0]
    assert path == "/v2/entries:write"
    assert headers["Content-Type"] == "application/json"
    assert orjson.loads(body)["partialSuccess"] is True
    entries = endpoint.entries()
    assert [e["jsonPayload"]["type"] for e in entries] == ["exposure", "outcome"]  # type: ignore[index]
    exposure_entry = entries[0]
    assert exposure_entry["logName"] == "projects/shop-prod/logs/abgate-events"
    payload = exposure_entry["jsonPayload"]
    assert payload["request_id"] == served.json()["request_id"]  # type: ignore[index]
    assert payload["items"] == [it["id"] for it in served.json()["items"]]  # type: ignore[index]
    assert exposure_entry["insertId"] == payload["event_id"]  # type: ignore[index]
    # Exactly the line the archive would have written for the same record.
    archive = ArchiveSink(Path("unused"), project="shop-prod", log_id="abgate-events")
    assert not archive_dir.exists() or not any(archive_dir.rglob("*.json"))
    assert sink.encode(exposure(1)) == archive.encode(exposure(1))


async def test_a_failed_send_keeps_the_batch_and_a_refused_one_is_dropped(
    endpoint: Endpoint,
) -> None:
    sink = sink_at(endpoint)
    metrics = Metrics()
    logger = BatchingLogger(sink, metrics, flush_interval=60, batch_size=3, queue_max=100)
    endpoint.statuses = [503, 429]
    for i in range(3):
        logger.put(exposure(i))
    await logger.flush()  # 503: kept
    await logger.flush()  # 429: kept
    assert len(logger) == 3 and metrics.log_errors._value.get() == 2
    await logger.flush()  # 200
    assert len(logger) == 0
    assert [e["insertId"] for e in endpoint.entries()] == ["e0", "e1", "e2"] * 3
    assert len(endpoint.requests) == 3
    endpoint.statuses = [400]
    logger.put(exposure(9))
    await logger.flush()  # refused as invalid: resending would fail again
    assert len(logger) == 0 and sink.dropped == 1


async def test_an_unreachable_endpoint_keeps_the_batch() -> None:
    sink = CloudLoggingSink(
        project="p", log_id="l", endpoint="http://127.0.0.1:1", credentials=AnonymousCredentials()
    )
    logger = BatchingLogger(sink, Metrics(), flush_interval=60, batch_size=10, queue_max=100)
    logger.put(exposure(1))
    await logger.flush()
    assert len(logger) == 1


def test_the_setting_chooses_the_sinks(tmp_path: Path) -> None:
    base = {"postgres_dsn": "postgresql://x", "redis_url": "redis://x", "archive_dir": tmp_path}
    from experiments import Settings

    default = build_sinks(Settings(**base))  # type: ignore[arg-type]
    assert list(default) == ["archive"] and isinstance(default["archive"], ArchiveSink)
    chosen = build_sinks(
        Settings(**base, log_sink="cloud-logging", cloud_logging_endpoint="http://h:1/")  # type: ignore[arg-type]
    )["cloud-logging"]
    assert isinstance(chosen, CloudLoggingSink) and chosen.url == "http://h:1/v2/entries:write"
    both = build_sinks(Settings(**base, log_sink=" archive , stdout"))  # type: ignore[arg-type]
    assert list(both) == ["archive", "stdout"] and isinstance(both["stdout"], StdoutSink)


@pytest.mark.parametrize("value", ["archive,files", "", "archive,archive"])
def test_an_unknown_or_repeated_sink_is_refused_naming_it(value: str) -> None:
    from pydantic import ValidationError

    from experiments import Settings

    with pytest.raises(ValidationError, match="log sink"):
        Settings(log_sink=value)
