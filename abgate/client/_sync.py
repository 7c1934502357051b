"""``Client``: the core driven over ``httpx.Client``; events go out from a daemon thread."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TypeVar

import httpx

from abgate.client._base import BaseClient, call_headers, failure
from abgate.client._core import Call, Exchange, Failure, Reply, Wait
from abgate.client._models import Recommendation

T = TypeVar("T")


class Client(BaseClient):
    """A blocking client of the gateway (options: ``BaseClient``), safe to share between
    threads (one per process, e.g. in a Django settings module). ``recommend`` never raises:
    when the gateway is down, late or refuses, the answer is the fallback. Call ``close``
    at shutdown (or use ``with``) so that buffered events are sent.

    The budget bounds connect, write and each read separately: a gateway that trickles its
    answer byte by byte can hold a call longer (``AsyncClient`` bounds the whole call)."""

    def _open(self) -> httpx.Client:
        self._http: httpx.Client | None = httpx.Client(**self._http_options)
        return self._http

    def _forget_http(self) -> None:
        self._http = None

    def _new_sender(self) -> None:
        self._wake = threading.Event()
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()

    def _connected(self) -> httpx.Client:
        """The HTTP client, made again on first use after a fork."""
        http = self._http
        if http is None:
            with self._sender_lock:
                http = self._http or self._open()
        return http

    def __enter__(self) -> Client:
        self._start_sender()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def recommend(
        self,
        surface: str,
        unit_id: str,
        *,
        exclude: Iterable[str] = (),
        limit: int | None = None,
        attributes: Mapping[str, object] | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Recommendation:
        """What to show ``unit_id`` on ``surface``: the gateway's answer within the budget
        (``timeout``, default the client's), or the fallback."""
        exchange = self.core.recommend(
            surface,
            unit_id,
            exclude=exclude,
            limit=limit,
            attributes=attributes,
            timeout=timeout,
            request_id=request_id,
        )
        return self._drive(exchange)

    def flush(self) -> bool:
        """Send the buffered events now; False if a batch failed (it stays buffered)."""
        while self.core.buffer.waiting:
            if not self._drive(self.core.send_batch()):
                return False
        return True

    def close(self) -> None:
        """Send what is buffered (for up to ``close_timeout``), then close the connections."""
        with self._sender_lock:
            self.core.closing = True
            sender = self._sender
        if sender is None:
            self._drive(self.core.sender())
        else:
            self._wake.set()
            sender.join()
        if self._http is not None:
            self._http.close()

    def _start_sender(self) -> None:
        with self._sender_lock:
            if self._sender is None and not self.core.closing:
                self._sender = threading.Thread(
                    target=self._drive,
                    args=(self.core.sender(),),
                    name="abgate-client-events",
                    daemon=True,  # a process that never calls close still exits
                )
                self._sender.start()

    def _wake_sender(self) -> None:
        self._wake.set()

    def _drive(self, exchange: Exchange[T]) -> T:
        """Perform each step of ``exchange`` until it returns its value."""
        try:
            step = next(exchange)
            while True:
                if isinstance(step, Wait):
                    self._wake.wait(step.seconds)
                    self._wake.clear()
                    step = exchange.send(None)
                else:
                    step = exchange.send(self._send(step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _send(self, call: Call) -> Reply | Failure:
        try:
            r = self._connected().post(
                call.path, content=call.body, headers=call_headers(call), timeout=call.timeout
            )
            return Reply(r.status_code, r.content)
        except httpx.HTTPError as exc:
            return failure(exc)
