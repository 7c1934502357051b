"""What both clients share above the core: their options, ``track`` and the counters.

The subclasses (``_async.AsyncClient``, ``_sync.Client``) add only the transport: how a
``Call`` is sent, how a ``Wait`` waits, and how the background sender runs.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from abgate.client._breaker import CircuitBreaker
from abgate.client._core import Call, CallStats, ClientCore, Failure
from abgate.client._models import EventStats, Item

try:
    USER_AGENT = f"abgate-client/{version('abgate')}"
except PackageNotFoundError:  # a source checkout that is not installed
    USER_AGENT = "abgate-client"

# A pool sized for a busy web worker; keep-alive spares a TCP handshake per call.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# Every client alive in this process, weakly: the fork hook below resets them in a child,
# and holding them here must not keep a dropped client (and its pool) alive.
_CLIENTS: weakref.WeakSet[BaseClient] = weakref.WeakSet()


def _reset_clients_after_fork() -> None:
    for client in list(_CLIENTS):
        client._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_reset_clients_after_fork)


class BaseClient:
    """A gateway client's options and event intake.

    Args:
        base_url: the gateway, e.g. ``http://abgate:8000``.
        api_key: sent as ``Authorization: Bearer``.
        timeout: the budget of one ``recommend`` call in seconds (default 0.3), retries
            included; a call may pass its own.
        defaults: per surface, the item ids to answer when the gateway cannot (else the
            last good answer on that surface, else an empty list).
        connect_retries: retries of a call whose connection failed (the request never left,
            so no exposure can be logged twice), within the budget.
        breaker_threshold, breaker_reset: after that many failures in a row, answer from the
            fallback without asking for that many seconds, then let one call probe.
        max_buffered_events, event_batch_size, flush_interval, events_timeout, max_backoff,
            close_timeout: the event sender (docs/integrators.md, "Events").
        limits: the connection pool (``httpx.Limits``).
        transport: an httpx transport (sync or async, matching the client), e.g. for a proxy.

    A client survives ``fork`` (gunicorn ``--preload``, multiprocessing): in the child it
    starts with new locks, an empty event buffer (the parent sends its own buffered events),
    zeroed counters and a closed breaker; its connections and sender are made on first use.
    A ``transport`` you pass is yours: the child reuses it as it is.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 0.3,
        defaults: Mapping[str, Sequence[str | Item]] | None = None,
        connect_retries: int = 1,
        breaker_threshold: int = 5,
        breaker_reset: float = 2.0,
        max_buffered_events: int = 10_000,
        event_batch_size: int = 100,
        flush_interval: float = 1.0,
        events_timeout: float = 5.0,
        max_backoff: float = 30.0,
        close_timeout: float = 5.0,
        limits: httpx.Limits = DEFAULT_LIMITS,
        transport: Any = None,
    ) -> None:
        self.core = ClientCore(
            timeout=timeout,
            defaults=defaults,
            connect_retries=connect_retries,
            breaker=CircuitBreaker(breaker_threshold, breaker_reset),
            max_buffered_events=max_buffered_events,
            event_batch_size=event_batch_size,
            flush_interval=flush_interval,
            events_timeout=events_timeout,
            max_backoff=max_backoff,
            close_timeout=close_timeout,
        )
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http_options: dict[str, Any] = {
            "base_url": base_url,
            "headers": headers,
            "limits": limits,
            "transport": transport,
        }
        self._open()
        self._new_sender()
        _CLIENTS.add(self)

    def _after_fork(self) -> None:
        """In a forked child: forget what belongs to the parent; reconnect on first use.

        The parent's connections are dropped unused and unclosed: closing them would take the
        pool's lock, which a parent thread may have held at the fork, and their sockets are
        the parent's to use (in the child, collecting them only closes the child's copies).
        The new pool is made on first use, not here: making one loads the CA bundle (~40 ms
        of CPU), which a child that never calls the gateway should not pay.
        """
        self.core.after_fork()
        self._forget_http()
        self._new_sender()

    def _open(self) -> object:
        """Make the HTTP client (its pool) from ``_http_options``, keep it and return it."""
        raise NotImplementedError

    def _forget_http(self) -> None:
        """Drop the HTTP client without closing it; the next call makes a new one."""
        raise NotImplementedError

    def _new_sender(self) -> None:
        """No sender yet, a new wake-up and new locks (again after a fork)."""
        raise NotImplementedError

    def _start_sender(self) -> None:
        raise NotImplementedError

    def _wake_sender(self) -> None:
        raise NotImplementedError

    def track(
        self,
        unit_id: str,
        name: str,
        *,
        value: float | None = None,
        item_id: str | None = None,
        ts: datetime | str | None = None,
    ) -> bool:
        """Buffer an outcome for the background sender, with a fresh ``event_id``; False if
        the buffer was full (the event is then dropped and counted in
        ``event_stats.refused``). ValueError names a bad argument."""
        event = self.core.event(unit_id, name, value, item_id, ts)
        self._start_sender()
        buffered, wake = self.core.track(event)
        if wake:
            self._wake_sender()
        return buffered

    @property
    def stats(self) -> CallStats:
        """Counters of ``recommend``: calls, fallbacks, retries, late (fallbacks after the
        request was sent, which the gateway may have served and logged)."""
        return self.core.stats

    @property
    def event_stats(self) -> EventStats:
        """What became of tracked events: sent, rejected, refused, lost (and still buffered:
        ``pending``)."""
        return self.core.buffer.stats

    @property
    def pending_events(self) -> int:
        """Events buffered and not yet accepted by the gateway."""
        return len(self.core.buffer)

    @property
    def breaker_state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return self.core.breaker.state


def call_headers(call: Call) -> dict[str, str] | None:
    """The headers of one call beyond the client's own: its request id when given."""
    return {"x-request-id": call.request_id} if call.request_id else None


def failure(exc: httpx.HTTPError) -> Failure:
    """The outcome of a call that raised ``exc``: only a failed connect is safe to retry
    (the request never left); a timeout or a broken exchange may have reached the gateway."""
    if isinstance(exc, httpx.ConnectError):
        return Failure(f"connect error: {exc}", connect=True)
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):  # nothing was sent
        return Failure("timeout", connect=True)
    if isinstance(exc, httpx.TimeoutException):
        return Failure("timeout")
    return Failure(f"{type(exc).__name__}: {exc}")
