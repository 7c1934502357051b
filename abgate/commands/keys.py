"""``abgate keys create|list|revoke|audit``: API keys for callers of the gateway.

Keys live in Postgres (``ABGATE_POSTGRES_DSN``, ``ABGATE_POSTGRES_SCHEMA``); gateways started
with ``ABGATE_API_KEYS=true`` pick up a change within a second. Exit codes: 0 done, 1 refused
(the message says why), 3 Postgres cannot be reached.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table

from abgate.commands import runtime
from experiments.store import PostgresKeyStore

app = typer.Typer(help="API keys: named, scoped to surfaces, rate limited.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

AuthorOpt = runtime.AUTHOR


def _run(work: Callable[[PostgresKeyStore], Awaitable[T]]) -> T:
    return runtime.run_on(PostgresKeyStore, work)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="A name for the caller, e.g. checkout-service"),
    surfaces: str = typer.Option("", "--surfaces", help="Comma-separated surfaces; empty: all"),
    rate: str = typer.Option(None, "--rate", help="e.g. 500/s, 3000/m; default: no limit"),
    author: str | None = AuthorOpt,
) -> None:
    """Create a key and print its secret once (only its SHA-256 is stored)."""
    wanted = [s.strip() for s in surfaces.split(",") if s.strip()]
    key, secret = _run(
        lambda store: store.create(
            name, wanted, rate, actor=runtime.author(author), host=socket.gethostname()
        )
    )
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
