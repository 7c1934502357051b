"""``abgate keys create|list|revoke|audit``: API keys for callers of the gateway.

Keys live in Postgres (``ABGATE_POSTGRES_DSN``, ``ABGATE_POSTGRES_SCHEMA``); gateways started
with ``ABGATE_API_KEYS=true`` pick up a change within a second. ``create --surfaces`` names
surfaces of the configuration the gateways serve (``ABGATE_EXPERIMENTS_DIR`` when set, else the
Postgres experiment store). Exit codes: 0 done, 1 refused (the message says why), 2 an unknown
surface, 3 Postgres cannot be reached.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table

from abgate.commands import runtime
from experiments import KeyChangeRefused
from experiments.settings import Settings
from experiments.store import ApiKey, PostgresKeyStore

app = typer.Typer(help="API keys: named, scoped to surfaces, rate limited.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

AuthorOpt = runtime.AUTHOR


def _run(work: Callable[[PostgresKeyStore], Awaitable[T]]) -> T:
    return runtime.run_on(PostgresKeyStore, work)


async def _known_surfaces(settings: Settings, store: PostgresKeyStore) -> tuple[set[str], str]:
    """The surfaces gateways serve, and where they were read: the configuration folder when
    ``ABGATE_EXPERIMENTS_DIR`` is set, else the Postgres experiment store."""
    from experiments import ConfigError, load_config_dir
    from experiments.store import PostgresExperimentStore

    if settings.experiments_dir is not None:
        where = f"ABGATE_EXPERIMENTS_DIR ({settings.experiments_dir})"
        try:
            return set(load_config_dir(settings.experiments_dir).surfaces), where
        except ConfigError as exc:
            raise KeyChangeRefused(f"cannot check --surfaces: {where}: {exc}") from None
    schema = settings.postgres_schema
    snapshot = await PostgresExperimentStore(store.pool).snapshot()
    return set(snapshot.config.surfaces), f"the experiment store (Postgres schema {schema})"


def _check_surfaces(wanted: list[str], known: set[str], where: str) -> None:
    """Exit 2 naming the surfaces of ``wanted`` that ``known`` lacks (typer.Exit leaves the
    event loop, closing the pool on its way)."""
    unknown = [s for s in wanted if s not in known]
    if unknown:
        names = ", ".join(f"'{s}'" for s in unknown)
        have = ", ".join(sorted(known)) or "none"
        runtime.fail(
            f"--surfaces: unknown surface{'s' * (len(unknown) > 1)} {names} "
            f"(surfaces in {where}: {have})",
            2,
        )


@app.command("create")
def create(
    name: str = typer.Argument(..., help="A name for the caller, e.g. checkout-service"),
    surfaces: str = typer.Option("", "--surfaces", help="Comma-separated surfaces; empty: all"),
    rate: str = typer.Option(None, "--rate", help="e.g. 500/s, 3000/m; default: no limit"),
    author: str | None = AuthorOpt,
) -> None:
    """Create a key and print its secret once (only its SHA-256 is stored)."""
    wanted = [s.strip() for s in surfaces.split(",") if s.strip()]

    async def work(store: PostgresKeyStore) -> tuple[ApiKey, str]:
        if wanted:
            _check_surfaces(wanted, *await _known_surfaces(Settings(), store))
        return await store.create(
            name, wanted, rate, actor=runtime.author(author), host=socket.gethostname()
        )

    key, secret = _run(work)
    err.print(
        f"created key '{key.name}' (surfaces: {', '.join(key.surfaces) or 'all'}, "
        f"rate: {key.rate or 'unlimited'}); the secret is shown this once:"
    )
    print(secret)


@app.command("list")
def list_keys(
    revoked: bool = typer.Option(False, "--revoked", help="Include revoked keys"),
) -> None:
    """Keys with their surfaces, rate, creation and last use."""
    keys = _run(lambda store: store.list_keys(include_revoked=revoked))
    table = Table("name", "prefix", "surfaces", "rate", "created", "by", "last used", "revoked")
    for k in keys:
        table.add_row(
            k.name,
            k.prefix + "…",
            ", ".join(k.surfaces) or "all",
            k.rate or "-",
            f"{k.created_at:%Y-%m-%d %H:%M:%S}",
            k.created_by,
            f"{k.last_used_at:%Y-%m-%d %H:%M:%S}" if k.last_used_at else "never",
            f"{k.revoked_at:%Y-%m-%d %H:%M:%S} by {k.revoked_by}" if k.revoked_at else "",
        )
    out.print(table)


@app.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="The key's name"),
    author: str | None = AuthorOpt,
) -> None:
    """Revoke a key: gateways refuse it (401) within a second."""
    key = _run(
        lambda store: store.revoke(name, actor=runtime.author(author), host=socket.gethostname())
    )
    err.print(f"revoked key '{key.name}' at {key.revoked_at:%Y-%m-%d %H:%M:%S %Z}")


@app.command("audit")
def audit(name: str = typer.Argument(None, help="One key's changes; default: all")) -> None:
    """Every key change: when, who, what, from where."""
    rows = _run(lambda store: store.audit(name))
    table = Table("at", "who", "action", "key", "details", "host", "client address")
    for r in rows:
        details = ", ".join(f"{k}={v}" for k, v in r.details.items() if v)
        table.add_row(
            f"{r.at:%Y-%m-%d %H:%M:%S}",
            r.actor,
            r.action,
            r.key_name,
            details,
            r.host,
            r.client or "-",
        )
    out.print(table)
