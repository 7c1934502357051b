"""What every command that talks to the servers shares: a Postgres pool, the event loop, and
errors turned into one line on stderr and an exit code.

Exit codes, the same for every command:

- ``0``: done;
- ``1`` (``FAILED``): invalid input or a refused change (a bad file, a load that breaks the
  contract, a change the store refuses, a query Postgres rejects); the message says what and
  where;
- ``3`` (``UNAVAILABLE``): a server cannot be reached (Postgres down, the embedded Postgres not
  installed).

Never a traceback for an error of ours; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import asyncpg
import typer
from rich.console import Console

from experiments import ConfigError, ExperimentsError, StoreError, StoreUnavailable
from experiments.settings import Settings

FAILED = 1
UNAVAILABLE = 3

err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
S = TypeVar("S")

AUTHOR = typer.Option(None, "--author", help="Who makes the change (default: $USER)")

# Base errors of the packages a command may use, by module: looked up only when an error
# arrives, so that a command does not import a package (pyarrow, mlflow...) it never uses. An
# error of a package that was never imported cannot occur.
_BASE_ERRORS = (("batch.errors", "BatchError"), ("registry.errors", "RegistryError"))


@contextlib.asynccontextmanager
async def postgres_pool(
    settings: Settings, *, max_size: int = 4, command_timeout: float = 60.0
) -> AsyncIterator[asyncpg.Pool]:
    """A pool on ``ABGATE_POSTGRES_DSN``/``_SCHEMA`` (migrated), or on the embedded Postgres of
    ``ABGATE_DATA_DIR`` when no DSN is set; closed on the way out. Raises StoreUnavailable
    (exit 3) when Postgres cannot be reached."""
    from abgate.embedded import EmbeddedError, ensure_postgres
    from experiments.store import create_pool

    try:
        dsn = await ensure_postgres(settings)
    except EmbeddedError as exc:
        raise StoreUnavailable(str(exc)) from None
    try:
        pool = await create_pool(
            dsn,
            settings.postgres_schema,
            min_size=1,
            max_size=max_size,
            command_timeout=command_timeout,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreUnavailable(f"cannot reach Postgres: {type(exc).__name__}: {exc}") from None
    try:
        yield pool
    finally:
        await pool.close()


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` on a new event loop; an error of ours prints one line and exits 1 or 3."""
    try:
        return asyncio.run(main())
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(f"[red]error[/] {issue}", highlight=False)
        raise typer.Exit(FAILED) from None
    except StoreUnavailable as exc:
        fail(str(exc), UNAVAILABLE)
    except StoreError as exc:
        err.print(f"[red]refused[/] {exc}", highlight=False)
        raise typer.Exit(FAILED) from None
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        fail(f"postgres: {type(exc).__name__}: {exc}", UNAVAILABLE)
    except asyncpg.PostgresError as exc:  # a query of the command
        fail(f"postgres: {type(exc).__name__}: {exc}")
    except Exception as exc:
        if isinstance(exc, (ExperimentsError, *_loaded_base_errors())):
            fail(str(exc))
        raise


def run_on(store: Callable[[asyncpg.Pool], S], work: Callable[[S], Awaitable[T]]) -> T:
    """``run`` ``work`` against ``store(pool)`` (``PostgresExperimentStore``, ...) on a pool of
    the settings (``postgres_pool``)."""

    async def main() -> T:
        async with postgres_pool(Settings()) as pool:
            return await work(store(pool))

    return run(main)


def author(given: str | None) -> str:
    """Who makes a change: ``--author``, else the user running the command."""
    return given or getpass.getuser()


def fail(message: str, code: int = FAILED) -> NoReturn:
    """Print ``error MESSAGE`` on stderr and exit with ``code``."""
    err.print(f"[red]error[/] {message}", highlight=False)
    raise typer.Exit(code)


def _loaded_base_errors() -> tuple[type[Exception], ...]:
    found = []
    for module, name in _BASE_ERRORS:
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)
