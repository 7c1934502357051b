"""``PostgresConfigSource``: the live configuration from the experiment store, hot-reloaded.

One dedicated connection LISTENs on ``abgate_config``; the store NOTIFYs it in the transaction
of every change, so a new snapshot is built as soon as the change commits. The loop also polls
the configuration revision every ``poll_interval`` seconds, and reconnects (checking the
revision at once) when the connection drops, so a missed notification costs at most one poll.

- An invalid configuration never replaces a working snapshot: ``changes()`` skips it and
  records the problem in ``last_error``.
- Every snapshot read from Postgres is written to ``cache_file``; when Postgres is unreachable
  at start, ``load()`` returns that last-known-good copy with ``origin = "disk-cache:PATH"``,
  and ``changes()`` yields the fresh one once Postgres answers again.

Use it as: ``snapshot = await source.load()``, then one task iterating ``source.changes()``,
and ``await source.aclose()`` at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from experiments.errors import ConfigError, StoreUnavailable
from experiments.source import ConfigSnapshot
from experiments.store.experiment_store import NOTIFY_CHANNEL
from experiments.store.migrations import migrate
from experiments.store.snapshots import load_cache, read_heads, save_cache, snapshot_from_heads

log = logging.getLogger("abgate.experiments.source")

# asyncpg raises InternalClientError ("cannot switch to state …") on a connection whose backend
# the server terminated before asyncpg saw it close (MagicStack/asyncpg#1069): a lost connection.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class PostgresConfigSource:
    """A ``ConfigSource`` reading the Postgres experiment store and following its changes."""

    def __init__(
        self,
        dsn: str,
        schema: str = "abgate",
        *,
        cache_file: Path | None = None,
        poll_interval: float = 5.0,
        connect_timeout: float = 2.0,
        command_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.cache_file = cache_file
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.last_error: str | None = None
        self._conn: asyncpg.Connection | None = None
        self._revision: int | None = None
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether the listening connection is up."""
        return self._conn is not None and not self._conn.is_closed()

    async def load(self) -> ConfigSnapshot:
        """The current configuration; the disk cache if Postgres is unreachable.

        Raises ``ConfigError`` if the stored configuration is invalid, and ``StoreUnavailable``
        if Postgres is unreachable and there is no usable cache.
        """
        try:
            conn = await self._connect()
            snapshot = await self._read(conn)
        except _UNREACHABLE as exc:
            await self._drop_connection()
            self.last_error = f"experiment store unreachable: {exc}"
            if self.cache_file is None or not self.cache_file.exists():
                raise StoreUnavailable(
                    f"{self.last_error}; no snapshot cache to fall back on"
                ) from exc
            snapshot = await asyncio.to_thread(load_cache, self.cache_file)
            log.warning(
                "serving the cached configuration",
                extra={"origin": snapshot.origin, "error": str(exc)},
            )
            return snapshot
        self._revision = snapshot.revision
        await self._save(snapshot)
        return snapshot

    async def changes(self) -> AsyncIterator[ConfigSnapshot]:
        """Each new valid snapshot, within a second of the change that made it."""
        while not self._closed:
            if not self.connected:
                try:
                    await self._connect()
                except _UNREACHABLE as exc:
                    self.last_error = f"experiment store unreachable: {exc}"
                    await self._idle()
                    continue
            snapshot = await self._poll_once()
            if snapshot is not None:
                yield snapshot
            if self.connected:  # after a drop, reconnect at once (and idle only if that fails)
                await self._idle()

    async def aclose(self) -> None:
        """Stop ``changes()`` and close the connection."""
        self._closed = True
        self._wake.set()
        await self._drop_connection()

    # --- internals -----------------------------------------------------------------------------

    async def _poll_once(self) -> ConfigSnapshot | None:
        """The new snapshot if the revision moved and the configuration is valid, else None."""
        conn = self._conn
        if conn is None:
            return None
        try:
            revision = int(await conn.fetchval("SELECT revision FROM config_state"))
            if revision == self._revision:
                return None
            snapshot = await self._read(conn)
        except ConfigError as exc:
            self.last_error = (
                f"configuration revision rejected, still serving revision {self._revision}: {exc}"
            )
            log.error(
                "invalid configuration in the store",
                extra={"error": str(exc), "revision": self._revision},
            )
            self._revision = revision  # do not rebuild the same broken revision every poll
            return None
        except _UNREACHABLE as exc:
            self.last_error = f"experiment store unreachable: {exc}"
            await self._drop_connection()
            return None
        self._revision = snapshot.revision
        self.last_error = None
        await self._save(snapshot)
        return snapshot

    async def _idle(self) -> None:
        """Wait for a notification, a dropped connection, or the poll interval."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        self._wake.clear()

    async def _connect(self) -> asyncpg.Connection:
        if self.connected and self._conn is not None:
            return self._conn
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
            server_settings={"application_name": "abgate-config-listener"},
        )
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(f'SET search_path TO "{self.schema}"')
            await migrate(conn)
            # Listen before the first read, so no change falls between the read and the listen.
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_terminated)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._wake.set()  # re-check the revision at once: changes may have happened while away
        return conn

    async def _read(self, conn: asyncpg.Connection) -> ConfigSnapshot:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            heads, revision = await read_heads(conn)
        return snapshot_from_heads(heads, revision, f"postgres:{self.schema}")

    async def _save(self, snapshot: ConfigSnapshot) -> None:
        if self.cache_file is None:
            return
        try:
            await asyncio.to_thread(save_cache, self.cache_file, snapshot)
        except OSError as exc:
            log.warning(
                "cannot write the snapshot cache",
                extra={"path": str(self.cache_file), "error": str(exc)},
            )

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*_UNREACHABLE):
                await asyncio.wait_for(conn.close(), self.connect_timeout)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if payload == self.schema:
            self._wake.set()

    def _on_terminated(self, _conn: object) -> None:
        self._wake.set()
