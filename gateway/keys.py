"""API keys in the gateway: loaded from Postgres, followed while serving, last use recorded.

``KeyFollower`` reads the active keys into the ``Authenticator`` at start, then re-reads them
when ``abgate keys`` NOTIFYs (``abgate_config`` with ``<schema>:keys``, on a dedicated LISTEN
connection) and at least every ``poll_interval`` seconds, so a revoked key is refused within a
second, or within one poll if the notification was missed. A key whose row did not change keeps
its ``Caller`` (and its rate bucket). Which keys were used is flushed to ``last_used_at`` on the
same tick, never on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from experiments.store import KEYS_PAYLOAD_SUFFIX, NOTIFY_CHANNEL, ApiKey, PostgresKeyStore
from gateway.auth import Authenticator, Caller
from gateway.ratelimit import TokenBucket, parse_rate

log = logging.getLogger("abgate.gateway")

KEY_FAILURES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a terminated backend, seen late (MagicStack/asyncpg#1069)
)
_UNREACHABLE = KEY_FAILURES


class KeyFollower:
    """Keeps an Authenticator's keys equal to the store's active keys."""

    def __init__(
        self,
        store: PostgresKeyStore,
        auth: Authenticator,
        *,
        dsn: str,
        schema: str,
        workers: int = 1,
        poll_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.auth = auth
        self.dsn = dsn
        self.schema = schema
        self.workers = workers
        self.poll_interval = poll_interval
        self._callers: dict[int, tuple[ApiKey, Caller]] = {}
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the keys (while Postgres is down: none until it is back) and follow changes in
        an owned background task."""
        try:
            await self.load()
        except KEY_FAILURES as exc:
            log.error("api keys not loaded; retrying", extra={"error": str(exc)})
        self._task = asyncio.create_task(self.run(), name="abgate-api-keys")

    async def aclose(self) -> None:
        """Stop following, then record the last uses (unless Postgres is down)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(*KEY_FAILURES):
            await self.flush_last_used()

    async def load(self) -> None:
        """Read the active keys now and serve them."""
        keys = await self.store.list_keys()
        callers: dict[int, tuple[ApiKey, Caller]] = {}
        for key in keys:
            kept = self._callers.get(key.id)
            if kept is not None and _same(kept[0], key):
                callers[key.id] = kept
            else:
                callers[key.id] = (key, self._caller(key))
        self._callers = callers
        self.auth.replace_keys({c.digest: c for _, c in callers.values()})

    def _caller(self, key: ApiKey) -> Caller:
        bucket = None
        if key.rate is not None:
            # Per process: each of --workers N gets its share (docs/operators.md).
            per_second = parse_rate(key.rate) / self.workers
            bucket = TokenBucket(per_second, max(1.0, per_second))
        surfaces = frozenset(key.surfaces) or None
        return Caller(key.name, key.digest, surfaces, bucket, key.id)

    async def run(self) -> None:
        """Follow changes until cancelled."""
        try:
            while True:
                await self._listen()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                self._wake.clear()
                try:
                    await self.flush_last_used()  # first: a revoked key's last use is kept
                    await self.load()
                except _UNREACHABLE as exc:
                    log.warning(
                        "api keys not refreshed; keeping the last known", extra={"error": str(exc)}
                    )
        finally:
            await self._close()

    async def flush_last_used(self) -> None:
        """Write ``last_used_at`` of the keys used since the last flush."""
        now = datetime.now(UTC)
        used = {}
        for key_id, (_, caller) in self._callers.items():
            if caller.used:
                caller.used = False
                used[key_id] = now
        await self.store.touch(used)

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            conn = await asyncpg.connect(
                self.dsn,
                timeout=2.0,
                server_settings={"application_name": "abgate-keys-listener"},
            )
        except _UNREACHABLE as exc:
            log.warning("cannot listen for api key changes; polling", extra={"error": str(exc)})
            return
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            conn.add_termination_listener(lambda _c: self._wake.set())
        except BaseException as exc:  # cancelled at shutdown, or the connection failed
            conn.terminate()
            if isinstance(exc, _UNREACHABLE):
                log.warning("cannot listen for api key changes; polling", extra={"error": str(exc)})
                return
            raise
        self._listener = conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if payload == self.schema + KEYS_PAYLOAD_SUFFIX:
            self._wake.set()

    async def _close(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*_UNREACHABLE):
                await asyncio.wait_for(conn.close(), 2.0)


def _same(a: ApiKey, b: ApiKey) -> bool:
    return (a.digest, a.surfaces, a.rate) == (b.digest, b.surfaces, b.rate)
