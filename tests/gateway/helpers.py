"""Building blocks for gateway tests: data loading, config files, a running app, a real server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette

from batch import load_results
from experiments.settings import Settings
from experiments.store import create_pool
from gateway import create_app
from gateway.server import GatewayHttpProtocol, uvicorn_options

SURFACES = """\
surfaces:
  - {name: home_top, default_model: "models:/home_recs@champion", max_limit: 50}
  - {name: cart_upsell, default_model: "models:/cart_recs/1"}
"""

EXPERIMENT = """\
key: home-exp
surface: home_top
status: running
variants:
  - {key: control, weight: 50, model: "models:/home_recs@champion"}
  - {key: treatment, weight: 50, model: "models:/home_recs/2"}
metrics:
  - {name: conversion, kind: proportion, outcome: purchase}
"""


def items(prefix: str, n: int = 30) -> list[dict[str, object]]:
    """A ranked list ``prefix-0 .. prefix-(n-1)`` with decreasing scores."""
    return [{"id": f"{prefix}-{i}", "score": round(1 - i / n, 4)} for i in range(n)]


async def load_demo_data(dsn: str, schema: str, units: int = 50) -> None:
    """Two versions of home_recs (1 = champion, 2) and one of cart_recs, with default lists."""
    pool = await create_pool(dsn, schema)
    try:
        for model, version, alias in (
            ("home_recs", "1", "champion"),
            ("home_recs", "2", None),
            ("cart_recs", "1", None),
        ):
            rows = [(f"u{i}", items(f"{model}-v{version}-u{i}")) for i in range(units)]
            rows.append(("__default__", items(f"{model}-v{version}-default")))
            await load_results(pool, iter(rows), model, version, alias=alias)
    finally:
        await pool.close()


def write_config(folder: Path, experiment: str | None = EXPERIMENT) -> None:
    """The standard surfaces file and (optionally) one experiment file."""
    (folder / "surfaces.yaml").write_text(SURFACES)
    if experiment is not None:
        (folder / "home-exp.yaml").write_text(experiment)


def settings_for(
    dsn: str,
    redis_url: str,
    schema: str,
    prefix: str,
    experiments_dir: Path | None,
    archive_dir: Path,
    **kw: object,
) -> Settings:
    """Settings of a test gateway (in-process cache off unless asked, fast flushes)."""
    values: dict[str, object] = {
        "postgres_dsn": dsn,
        "postgres_schema": schema,
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "experiments_dir": experiments_dir,
        "data_dir": archive_dir.parent / "data",
        "archive_dir": archive_dir,
        "local_cache_size": 0,
        "log_flush_interval": 0.05,
    }
    values.update(kw)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, **kw: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app (``create_app(settings, **kw)``) with its lifespan running, and an httpx client
    over ASGI."""
    app = create_app(settings, **kw)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield app, client


def read_archive(root: Path) -> list[dict[str, object]]:
    """Every LogEntry line below ``root``."""
    out = []
    for p in sorted(root.rglob("*.json")):
        out.extend(orjson.loads(line) for line in p.read_bytes().splitlines() if line)
    return out


@contextlib.asynccontextmanager
async def served(app: Any, protocol: Any, **extra: Any) -> AsyncIterator[int]:
    """``app`` on a real uvicorn server (``abgate serve``'s options and ``extra``) with the HTTP
    protocol class ``protocol``; its port."""
    options = {**uvicorn_options(Settings()), "http": protocol, "port": 0, "lifespan": "off"}
    options.update(extra)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)  # uvicorn exposes no event for "started"
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


def gateway_protocol(
    cls: type[GatewayHttpProtocol] = GatewayHttpProtocol, timeouts: float | None = None
) -> Any:
    """``cls`` with the options of ``abgate serve`` (or header and body ``timeouts``)."""
    s = Settings()
    return functools.partial(
        cls,
        header_timeout=timeouts or s.header_timeout,
        body_timeout=timeouts or s.body_timeout,
        max_concurrency=s.max_concurrency,
    )


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a new connection, half-close, and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def request(path: str, method: str = "GET", version: str = "1.1", extra: str = "") -> bytes:
    """A request without a body (``extra``: more header lines)."""
    return f"{method} {path} HTTP/{version}\r\nhost: t\r\n{extra}\r\n".encode()


def without_date(raw: bytes) -> bytes:
    """``raw`` answers with their ``date`` headers blanked, to compare two servers' bytes."""
    return re.sub(rb"date: [^\r]*\r\n", b"date: -\r\n", raw)
