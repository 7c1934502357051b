"""A gateway on a real uvicorn server on a free port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from abgate.embedded import free_port
from experiments.settings import Settings
from gateway import create_app
from gateway.server import uvicorn_options


@contextlib.asynccontextmanager
async def serving(settings: Settings, app: Starlette | None = None) -> AsyncIterator[str]:
    """The base URL of ``app`` (default: ``create_app(settings)``) served by uvicorn, with the
    options of ``abgate serve`` (gateway/server.py)."""
    port = free_port()
    options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": port, "lifespan": "on"}
    config = uvicorn.Config(app or create_app(settings), **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)  # uvicorn exposes no event for "started"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def sqlite_registry(root: Path) -> tuple[Any, Any]:
    """A sqlite MLflow registry with home_recs versions 1 (@champion) and 2: the
    ``MlflowRegistry`` over it and an ``MlflowClient`` to read it back."""
    from mlflow import MlflowClient

    from registry import MlflowRegistry

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("home_recs")
    for _ in ("1", "2"):
        client.create_model_version("home_recs", source=(root / "model").as_uri())
    client.set_registered_model_alias("home_recs", "champion", "1")
    return MlflowRegistry(uri), client
