"""``abgate serve`` (the gateway) and ``abgate demo`` (the tour on embedded servers)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from experiments import ConfigError, load_config_dir
from experiments.settings import Settings

err = Console(stderr=True, soft_wrap=True)


def print_config_error(exc: ConfigError) -> None:
    """Every issue of a ConfigError, one per line, on stderr."""
    for issue in exc.issues:
        err.print(f"[red]error[/] {issue}", highlight=False)


def serve(
    host: str = typer.Option(None, help="Bind address (env ABGATE_HOST; default 127.0.0.1)"),
    port: int = typer.Option(None, help="Port (env ABGATE_PORT or PORT; default 8000)"),
    experiments_dir: Path = typer.Option(
        None, help="Folder of experiment YAML (env ABGATE_EXPERIMENTS_DIR)"
    ),
    workers: int = typer.Option(
        None,
        help="Gateway processes sharing the port, one per vCPU (env ABGATE_WORKERS; default 1)",
    ),
    log_level: str = typer.Option("info", help="Log level of the JSON logs on stderr"),
) -> None:
    """Run the gateway (uvicorn, uvloop, httptools; one process, or --workers under uvicorn's
    supervisor).

    Services come from ABGATE_POSTGRES_DSN and ABGATE_REDIS_URL; when unset,
    embedded servers start in ABGATE_DATA_DIR. SIGTERM/SIGINT flush every accepted
    log record before exit (in every worker: they share the archive folder
    safely, each batch under an exclusive flock).
    """
    import uvicorn

    from abgate.embedded import EmbeddedError, resolve_services
    from abgate.logs import TraceContext, configure_logging
    from gateway import create_app
    from gateway.server import uvicorn_options

    overrides = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "experiments_dir": experiments_dir,
            "workers": workers,
        }.items()
        if v is not None
    }
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_logging(log_level.upper())
    if settings.experiments_dir is not None:
        try:
            load_config_dir(settings.experiments_dir)
        except ConfigError as exc:
            print_config_error(exc)
            err.print("the gateway did not start: fix the files above")
            raise typer.Exit(2) from None
    try:
        dsn, redis_url = resolve_services(
            settings.postgres_dsn, settings.redis_url, settings.data_dir
        )
    except EmbeddedError as exc:
        err.print(f"[red]error[/] {exc}")
        raise typer.Exit(2) from None
    if not settings.postgres_dsn or not settings.redis_url:
        logging.getLogger("abgate").warning(
            "using embedded servers", extra={"data_dir": str(settings.data_dir)}
        )
    settings = settings.model_copy(update={"postgres_dsn": dsn, "redis_url": redis_url})
    options = uvicorn_options(settings)
    if settings.workers == 1:
        uvicorn.run(TraceContext(create_app(settings), settings.gcp_project), **options)
        return
    # Each worker is a fresh interpreter that builds its app from the environment: hand it the
    # resolved services and the command-line overrides through ABGATE_* variables, and the
    # folder of prometheus-client's multiprocess mode, which it reads when it is imported.
    metrics_dir, made = _metrics_dir(settings.prometheus_multiproc_dir)
    os.environ.update(
        {
            "ABGATE_POSTGRES_DSN": dsn,
            "ABGATE_REDIS_URL": redis_url,
            **{f"ABGATE_{k.upper()}": str(v) for k, v in overrides.items()},
            "ABGATE_SERVE_LOG_LEVEL": log_level.upper(),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
    )
    try:
        uvicorn.run(
            "abgate.commands.serve:worker_app", factory=True, workers=settings.workers, **options
        )
    finally:
        if made:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        else:
            _clear_metrics_dir(metrics_dir)


def _metrics_dir(given: Path | None) -> tuple[Path, bool]:
    """The multiprocess metrics folder of a ``--workers`` run, empty, and whether it was made
    here (then it is removed at exit). A folder the operator named is emptied at start and at
    exit, as prometheus-client requires: values left by an earlier run would be added in."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="abgate-metrics-")), True
    given.mkdir(parents=True, exist_ok=True)
    _clear_metrics_dir(given)
    return given, False


def _clear_metrics_dir(folder: Path) -> None:
    for path in folder.glob("*.db"):
        path.unlink(missing_ok=True)


def worker_app() -> Any:
    """The app of one ``--workers`` process, built from ABGATE_* variables (see ``serve``)."""
    from abgate.logs import TraceContext, configure_logging
    from gateway import create_app

    configure_logging(os.environ.get("ABGATE_SERVE_LOG_LEVEL", "INFO"))
    settings = Settings()
    return TraceContext(create_app(settings), settings.gcp_project)


def demo(
    data_dir: Path = typer.Option(
        Path(".abgate/demo"), help="Folder for the demo's servers, data and archive"
    ),
    users: int = typer.Option(20_000, help="Users with precomputed results per model version"),
    traffic_users: int = typer.Option(8_000, help="Simulated users sending requests"),
    concurrency: int = typer.Option(16, help="Concurrent simulated clients"),
) -> None:
    """Run the tour: embedded servers, two model versions, an experiment, traffic, a summary."""
    import asyncio

    from abgate.demo import run_demo

    raise typer.Exit(
        asyncio.run(
            run_demo(data_dir, users=users, traffic_users=traffic_users, concurrency=concurrency)
        )
    )
