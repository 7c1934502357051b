"""Open-loop and closed-loop load runs.

Open loop (the default): request ``i`` is *due* at ``t0 + i / rate`` whatever happened to
the previous ones, as independent users arrive. Its latency is measured from that due time,
not from the moment a connection was free to send it, so a server that stalls for a second
shows a second of latency on every request that arrived meanwhile (no coordinated omission,
the flaw Gil Tene named in closed-loop tools). At most ``concurrency`` requests are in flight;
the rest wait in the generator, and the wait counts. ``send_lag`` records how late each
request left: if it grows while the server is idle, the generator is the bottleneck.

Closed loop: ``concurrency`` workers each send the next request when the previous answer
arrives; latency is measured from the send. It finds the maximum throughput, not the
latency users see at a given rate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from time import perf_counter
from typing import TypeVar

from loadtests.client import ClientError, Connection, Target
from loadtests.recorder import LoadResult, Recorder, percentiles_ms
from loadtests.scenario import BodyFactory, Scenario

T = TypeVar("T")


async def run_open_loop(
    url: str,
    scenario: Scenario,
    *,
    rate: float,
    duration: float,
    concurrency: int = 64,
    warmup: float = 0.0,
    timeout: float = 10.0,
    token: str | None = None,
) -> LoadResult:
    """Send ``rate`` requests per second for ``warmup + duration`` seconds; measure the last
    ``duration``."""
    if rate <= 0 or duration <= 0 or concurrency < 1:
        raise ValueError("rate and duration must be > 0, concurrency >= 1")
    target = Target.from_url(url, token)
    factory = scenario.bodies()
    rec = Recorder()
    queue: asyncio.Queue[tuple[float, bool]] = asyncio.Queue()
    conns = [Connection(target) for _ in range(concurrency)]
    workers = [
        asyncio.create_task(_open_worker(c, queue, factory, rec), name=f"loadtest-{i}")
        for i, c in enumerate(conns)
    ]
    workers.append(asyncio.create_task(_watchdog(conns, timeout), name="loadtest-watchdog"))
    total = int((warmup + duration) * rate)
    warm_n = int(warmup * rate)
    try:
        t0 = perf_counter()
        i = 0
        while i < total:
            due_now = min(total, int((perf_counter() - t0) * rate) + 1)
            while i < due_now:
                queue.put_nowait((t0 + i / rate, i >= warm_n))
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, t0 + i / rate - perf_counter()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), timeout + 1.0)
        end = perf_counter()
        # Requests still queued when the drain deadline passed never got an answer.
        while not queue.empty():
            _, measured = queue.get_nowait()
            if measured:
                rec.error("not_sent")
    finally:
        await _stop(workers, conns)
    window = max(duration, end - (t0 + warmup))
    return _result("open", url, scenario, window, concurrency, rate, total - warm_n, rec)


async def _open_worker(
    conn: Connection,
    queue: asyncio.Queue[tuple[float, bool]],
    factory: BodyFactory,
    rec: Recorder,
) -> None:
    while True:
        due, measured = await queue.get()
        try:
            body = factory.body()
            if measured:
                rec.send_lag(perf_counter() - due)
            status = await _request(conn, body, rec if measured else None)
            if status is not None and measured:
                rec.response(status, perf_counter() - due)
        finally:
            queue.task_done()


async def run_closed_loop(
    url: str,
    scenario: Scenario,
    *,
    duration: float,
    concurrency: int = 32,
    warmup: float = 0.0,
    timeout: float = 10.0,
    token: str | None = None,
) -> LoadResult:
    """Keep ``concurrency`` requests in flight for ``warmup + duration`` seconds; measure the
    last ``duration``."""
    if duration <= 0 or concurrency < 1:
        raise ValueError("duration must be > 0, concurrency >= 1")
    target = Target.from_url(url, token)
    factory = scenario.bodies()
    rec = Recorder()
    conns = [Connection(target) for _ in range(concurrency)]
    t0 = perf_counter()
    measure_from = t0 + warmup
    deadline = measure_from + duration
    sent = [0]
    workers = [
        asyncio.create_task(
            _closed_worker(c, factory, rec, measure_from, deadline, sent),
            name=f"loadtest-{i}",
        )
        for i, c in enumerate(conns)
    ]
    watchdog = asyncio.create_task(_watchdog(conns, timeout), name="loadtest-watchdog")
    try:
        await asyncio.gather(*workers)
    finally:
        await _stop([*workers, watchdog], conns)
    window = perf_counter() - measure_from
    return _result("closed", url, scenario, window, concurrency, None, sent[0], rec)


async def _closed_worker(
    conn: Connection,
    factory: BodyFactory,
    rec: Recorder,
    measure_from: float,
    deadline: float,
    sent: list[int],
) -> None:
    while (start := perf_counter()) < deadline:
        measured = start >= measure_from
        sent[0] += measured
        status = await _request(conn, factory.body(), rec if measured else None)
        if status is None:
            await asyncio.sleep(0.01)  # do not spin on a server that refuses connections
        elif measured:
            rec.response(status, perf_counter() - start)


async def _request(conn: Connection, body: bytes, rec: Recorder | None) -> int | None:
    """One request; ``None`` (and an error recorded) when no response came."""
    try:
        return await conn.request(body)
    except TimeoutError:
        kind = "timeout"
    except ClientError as exc:
        kind = type(exc).__name__
    if rec is not None:
        rec.error(kind)
    return None


async def _watchdog(conns: list[Connection], timeout: float) -> None:
    """Time out requests in flight for longer than ``timeout`` seconds."""
    tick = min(0.1, timeout / 10)
    while True:
        await asyncio.sleep(tick)
        now = perf_counter()
        for c in conns:
            c.expire(now, timeout)


async def _stop(workers: list[asyncio.Task[None]], conns: list[Connection]) -> None:
    for w in workers:
        w.cancel()
    for w in workers:
        with contextlib.suppress(asyncio.CancelledError):
            await w
    for c in conns:
        c.close()


def _result(
    mode: str,
    url: str,
    scenario: Scenario,
    window: float,
    concurrency: int,
    rate: float | None,
    scheduled: int,
    rec: Recorder,
) -> LoadResult:
    return LoadResult(
        mode=mode,
        url=url,
        scenario=_describe(scenario),
        duration_s=window,
        concurrency=concurrency,
        target_rate=rate,
        scheduled=scheduled,
        statuses=dict(rec.statuses),
        errors=dict(rec.errors),
        latency_ms=percentiles_ms(rec.latency),
        send_lag_ms=percentiles_ms(rec.lag) if mode == "open" else {},
    )


def _describe(s: Scenario) -> str:
    units = f"{s.hot_units} hot" if s.kind == "hot" else f"{s.units} {s.kind.value}"
    unknown = f", {s.unknown_share:.0%} unknown" if s.unknown_share else ""
    return f"{s.surface}: {units} units{unknown}, {s.exclusions} exclusions, limit {s.limit}"


def run(coro: Coroutine[object, object, T]) -> T:
    """Run ``coro`` on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
