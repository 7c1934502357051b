"""abgate.client against a real gateway (``abgate serve`` or uvicorn, real Postgres and Redis):
stopped, paused and slow, the caller always gets an answer within its budget; events sent
before, during and after an outage arrive exactly once (after the readers' dedup by event_id).

Bounds on time are generous multiples of the budget: they fail when the client waits for the
gateway instead of falling back, not when the machine is busy.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import time
import traceback
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from abgate.client import AsyncClient, Client
from gateway import create_app
from tests.e2e.helpers import serving
from tests.gateway.helpers import load_demo_data, read_archive, settings_for, write_config
from tests.integration.gateway_process import GatewayProcess

pytestmark = pytest.mark.slow

BUDGET = 0.3
# The most a call may take: the budget, plus scheduling slack on a loaded 2-core machine.
# A client that waited for a paused or slow gateway would take its full delay (>= 5 s).
BOUND = BUDGET + 1.5


@pytest.fixture
async def gateway(
    pg_dsn: str,
    redis_url: str,
    schema: str,
    redis_prefix: str,
    experiments_dir: Path,
    archive_dir: Path,
) -> AsyncIterator[GatewayProcess]:
    await load_demo_data(pg_dsn, schema, units=20)
    write_config(experiments_dir)
    env = {
        "ABGATE_POSTGRES_DSN": pg_dsn,
        "ABGATE_POSTGRES_SCHEMA": schema,
        "ABGATE_REDIS_URL": redis_url,
        "ABGATE_REDIS_PREFIX": redis_prefix,
        "ABGATE_EXPERIMENTS_DIR": str(experiments_dir),
        "ABGATE_ARCHIVE_DIR": str(archive_dir),
        "ABGATE_DATA_DIR": str(archive_dir.parent / "data"),
    }
    proc = GatewayProcess(env, archive_dir.parent / "serve.log")
    await asyncio.to_thread(proc.start)
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


def outcomes(archive: Path) -> list[str]:
    """The event ids of every outcome record in the archive, duplicates included."""
    return [
        e["jsonPayload"]["event_id"]
        for e in read_archive(archive)
        if e["jsonPayload"]["type"] == "outcome"
    ]


def exposures(archive: Path) -> list[dict[str, object]]:
    return [
        e["jsonPayload"] for e in read_archive(archive) if e["jsonPayload"]["type"] == "exposure"
    ]


async def timed(call: object) -> tuple[object, float]:
    started = time.monotonic()
    result = await call  # type: ignore[misc]
    return result, time.monotonic() - started


async def test_answers_come_from_the_gateway_and_each_event_is_archived_once(
    gateway: GatewayProcess, archive_dir: Path
) -> None:
    async with AsyncClient(gateway.url, timeout=BUDGET, event_batch_size=10) as client:
        rec = await client.recommend("home_top", "u1", limit=5, exclude=["x"])
        tracked = [client.track(f"u{i}", "purchase", value=float(i)) for i in range(25)]
    assert rec.source in ("cache", "db") and rec.experiment == "home-exp"
    assert len(rec.items) == 5 and rec.model is not None and rec.request_id
    assert all(tracked)
    assert client.event_stats.sent == 25 and client.event_stats.batches == 3
    await asyncio.to_thread(gateway.stop)
    ids = outcomes(archive_dir)
    assert len(ids) == 25 == len(set(ids))
    assert [e["unit_id"] for e in exposures(archive_dir)] == ["u1"]


async def test_gateway_stopped_the_caller_gets_the_fallback_within_its_budget(
    gateway: GatewayProcess, archive_dir: Path
) -> None:
    async with AsyncClient(
        gateway.url,
        timeout=BUDGET,
        defaults={"cart_upsell": ["d1", "d2", "d3"]},
        breaker_threshold=3,
        breaker_reset=60,
    ) as client:
        good = await client.recommend("home_top", "u1", limit=5)
        await asyncio.to_thread(gateway.stop)
        answers = [await timed(client.recommend("home_top", f"u{i}", limit=5)) for i in range(6)]
        cart, _ = await timed(client.recommend("cart_upsell", "u1", exclude=["d2"]))
    assert good.source in ("cache", "db")
    assert all(a.source == "client-fallback" for a, _ in answers)
    assert max(t for _, t in answers) < BOUND
    # no default for home_top: the last good answer on the surface
    assert all(a.item_ids == good.item_ids for a, _ in answers)
    assert answers[0][0].error.startswith("connect error")
    assert answers[-1][0].error == "circuit open" and client.breaker_state == "open"
    assert cart.item_ids == ["d1", "d3"] and cart.experiment is None
    assert client.stats.fallbacks == 7
    assert client.stats.late == 0  # refused connections and an open circuit: nothing was sent
    # fallbacks are not exposures: only the one answer the gateway gave is logged
    assert [e["unit_id"] for e in exposures(archive_dir)] == ["u1"]


async def test_gateway_paused_the_sync_client_answers_within_its_budget(
    gateway: GatewayProcess,
) -> None:
    client = Client(gateway.url, timeout=BUDGET, breaker_threshold=100)
    try:
        good = await asyncio.to_thread(client.recommend, "home_top", "u2")
        gateway.pause()
        try:
            answers = [
                await timed(asyncio.to_thread(client.recommend, "home_top", f"u{i}"))
                for i in range(3)
            ]
        finally:
            gateway.resume()
        after = await asyncio.to_thread(client.recommend, "home_top", "u3", timeout=10)
    finally:
        await asyncio.to_thread(client.close)
    assert good.source in ("cache", "db")
    assert [a.source for a, _ in answers] == ["client-fallback"] * 3
    assert [a.error for a, _ in answers] == ["timeout"] * 3
    assert max(t for _, t in answers) < BOUND
    assert after.source in ("cache", "db")  # the pool recovers once the gateway does
    assert client.stats.late == 3  # sent, then given up on: the gateway may serve them yet


async def test_gateway_paused_the_async_client_answers_within_its_budget(
    gateway: GatewayProcess,
) -> None:
    async with AsyncClient(gateway.url, timeout=BUDGET, breaker_threshold=100) as client:
        await client.recommend("home_top", "u2")
        gateway.pause()
        try:
            answers = await asyncio.gather(
                *(timed(client.recommend("home_top", f"u{i}")) for i in range(10))
            )
        finally:
            gateway.resume()
    assert {a.source for a, _ in answers} == {"client-fallback"}
    assert max(t for _, t in answers) < BOUND


class SlowRecommendations:
    """The gateway app, with ``/v1/recommendations`` answered ``delay`` seconds late: the
    request is served (and its exposure logged) at once, the answer waits."""

    def __init__(self, app: object, delay: float) -> None:
        self.app = app
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/recommendations":
            return await self.app(scope, receive, send)  # type: ignore[operator,no-any-return]

        async def late_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(self.delay)
            await send(message)

        await self.app(scope, receive, late_send)  # type: ignore[operator]


async def test_gateway_slow_the_caller_gets_the_fallback_within_its_budget(
    pg_dsn: str,
    redis_url: str,
    schema: str,
    redis_prefix: str,
    experiments_dir: Path,
    archive_dir: Path,
) -> None:
    await load_demo_data(pg_dsn, schema, units=20)
    write_config(experiments_dir)
    settings = settings_for(pg_dsn, redis_url, schema, redis_prefix, experiments_dir, archive_dir)
    app = SlowRecommendations(create_app(settings), delay=1.0)
    async with (
        serving(settings, app) as url,  # type: ignore[arg-type]
        AsyncClient(url, timeout=BUDGET, defaults={"home_top": ["d1"]}) as client,
    ):
        late, took = await timed(client.recommend("home_top", "u1"))
        patient = await client.recommend("home_top", "u1", timeout=10)
    assert late.source == "client-fallback" and late.item_ids == ["d1"]
    assert late.error == "timeout" and took < BOUND
    assert patient.source in ("cache", "db")  # a per-call budget overrides the client's
    assert (client.stats.fallbacks, client.stats.late) == (1, 1)
    # the gateway served the request the client gave up on: two exposures, one per request
    assert [e["unit_id"] for e in exposures(archive_dir)] == ["u1", "u1"]


async def test_events_sent_before_during_and_after_outages_arrive_exactly_once(
    gateway: GatewayProcess, archive_dir: Path
) -> None:
    client = AsyncClient(
        gateway.url, event_batch_size=10, flush_interval=60, events_timeout=0.5, close_timeout=20
    )

    def track(tag: str) -> None:
        for i in range(10):
            assert client.track(f"u{i}", tag, value=1.0)

    try:
        track("before")
        assert await client.flush()
        await asyncio.to_thread(gateway.stop)  # an outage: the process is gone
        track("stopped")
        assert not await client.flush()  # kept, not lost
        assert client.pending_events == 10
        await asyncio.to_thread(gateway.start)
        assert await client.flush()
        gateway.pause()  # an outage where the gateway reads the batch after the timeout
        try:
            track("paused")
            assert not await client.flush()
        finally:
            gateway.resume()
        track("after")
    finally:
        await client.aclose()  # sends the paused batch again, and the last one
    await asyncio.to_thread(gateway.stop)
    stats = client.event_stats
    assert (stats.tracked, stats.sent, stats.lost, stats.refused, stats.rejected) == (
        40, 40, 0, 0, 0
    )  # fmt: skip
    records = [
        e["jsonPayload"] for e in read_archive(archive_dir) if e["jsonPayload"]["type"] == "outcome"
    ]
    unique = {r["event_id"]: r["name"] for r in records}  # the readers' dedup by event_id
    assert Counter(unique.values()) == {"before": 10, "stopped": 10, "paused": 10, "after": 10}
    # at least once on the wire: only the batch the paused gateway read late can be doubled
    doubled = {unique[i] for i, n in Counter(r["event_id"] for r in records).items() if n > 1}
    assert doubled <= {"paused"}


def in_child(work: Callable[[], dict[str, object]], report: Path) -> int:
    """Fork; the child runs ``work``, writes what it returns (or its traceback) to ``report``
    as JSON and exits at once (no atexit, no pytest teardown). The parent gets the pid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: forking with threads
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        report.write_text(json.dumps(work()))
        code = 0
    except BaseException:
        report.write_text(json.dumps({"error": traceback.format_exc()}))
    finally:
        os._exit(code)


def reap(pid: int, report: Path, timeout: float = 60) -> dict[str, object]:
    """Wait (bounded) for the child to exit; what it reported."""
    fd = os.pidfd_open(pid)
    try:
        exited, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not exited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"the forked child hung (killed after {timeout} s)")
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    result: dict[str, object] = json.loads(report.read_text())
    assert code == 0, result.get("error")
    return result


def assert_each_once(archive: Path, units: list[str]) -> None:
    """Each unit's one outcome is in the archive once: no event lost, none sent twice."""
    records = [
        e["jsonPayload"] for e in read_archive(archive) if e["jsonPayload"]["type"] == "outcome"
    ]
    assert sorted(r["unit_id"] for r in records) == sorted(units)
    assert len({r["event_id"] for r in records}) == len(records)


async def test_a_sync_client_keeps_working_in_a_forked_child_and_each_event_arrives_once(
    gateway: GatewayProcess, archive_dir: Path, tmp_path: Path
) -> None:
    # One pooled connection: a child using the parent's would interleave their exchanges.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    client = Client(gateway.url, timeout=10, event_batch_size=10, flush_interval=60, limits=one)
    assert client.recommend("home_top", "u1").source in ("cache", "db")
    for i in range(15):  # a full batch wakes the sender thread; some stay buffered at the fork
        client.track(f"parent-{i}", "purchase", value=1.0)
    assert client.flush() and client.track("parent-15", "purchase")

    def child() -> dict[str, object]:
        pending = client.pending_events  # the parent's buffer is the parent's to send
        answers = [client.recommend("home_top", f"c{i}") for i in range(20)]
        for i in range(10):
            client.track(f"child-{i}", "purchase", value=2.0)
        client.close()
        return {
            "pending": pending,
            "answers": [(a.unit_id, a.source) for a in answers],
            "events": asdict(client.event_stats),
            "calls": asdict(client.stats),
        }

    report = tmp_path / "child.json"
    pid = in_child(child, report)
    answers = [client.recommend("home_top", f"p{i}") for i in range(20)]
    for i in range(16, 20):
        client.track(f"parent-{i}", "purchase", value=1.0)
    seen = await asyncio.to_thread(reap, pid, report)
    await asyncio.to_thread(client.close)
    await asyncio.to_thread(gateway.stop)

    assert seen["pending"] == 0
    assert seen["answers"] == [[f"c{i}", s] for i, (_, s) in enumerate(seen["answers"])]
    assert "client-fallback" not in {s for _, s in seen["answers"]}  # the gateway answered
    assert seen["events"]["tracked"] == seen["events"]["sent"] == 10  # counters start anew
    assert seen["calls"]["calls"] == 20 and seen["calls"]["fallbacks"] == 0
    assert [(a.unit_id, a.is_fallback) for a in answers] == [(f"p{i}", False) for i in range(20)]
    assert client.event_stats.sent == 20 and client.stats.fallbacks == 0
    assert_each_once(
        archive_dir, [f"parent-{i}" for i in range(20)] + [f"child-{i}" for i in range(10)]
    )
    units = Counter(str(e["unit_id"]) for e in exposures(archive_dir))
    assert units == Counter(["u1"] + [f"c{i}" for i in range(20)] + [f"p{i}" for i in range(20)])


async def test_an_async_client_keeps_working_in_a_forked_child_in_a_new_event_loop(
    gateway: GatewayProcess, archive_dir: Path, tmp_path: Path
) -> None:
    client = AsyncClient(gateway.url, timeout=10, event_batch_size=10, flush_interval=60)
    assert (await client.recommend("home_top", "u1")).source in ("cache", "db")
    for i in range(15):
        client.track(f"parent-{i}", "purchase", value=1.0)
    assert await client.flush() and client.track("parent-15", "purchase")

    def child() -> dict[str, object]:
        async def main() -> dict[str, object]:
            pending = client.pending_events
            answer = await client.recommend("home_top", "u1")  # cached by the parent's call
            for i in range(10):
                client.track(f"child-{i}", "purchase", value=2.0)
            await client.aclose()
            return {"pending": pending, "source": answer.source, "sent": client.event_stats.sent}

        return asyncio.run(main())

    report = tmp_path / "child.json"
    # Forked from a worker thread, the child has no running loop: it runs its own, as a
    # process forked before its event loop starts (gunicorn --preload's workers) does.
    pid = await asyncio.to_thread(in_child, child, report)
    assert not (await client.recommend("home_top", "p1")).is_fallback
    for i in range(16, 20):
        client.track(f"parent-{i}", "purchase", value=1.0)
    seen = await asyncio.to_thread(reap, pid, report)
    await client.aclose()
    await asyncio.to_thread(gateway.stop)

    assert seen == {"pending": 0, "source": "cache", "sent": 10}
    assert client.event_stats.sent == 20
    assert_each_once(
        archive_dir, [f"parent-{i}" for i in range(20)] + [f"child-{i}" for i in range(10)]
    )
