"""``AsyncClient``: the core driven over ``httpx.AsyncClient``; events go out from a task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TypeVar

import httpx

from abgate.client._base import BaseClient, call_headers, failure
from abgate.client._core import Call, Exchange, Failure, Reply, Wait
from abgate.client._models import Recommendation

T = TypeVar("T")


class AsyncClient(BaseClient):
    """An asyncio client of the gateway (options: ``BaseClient``). ``recommend`` never
    raises: when the gateway is down, late or refuses, the answer is the fallback
    (``source == "client-fallback"``). Use ``async with``, or call ``aclose`` at shutdown
    so that buffered events are sent."""

    def _open(self) -> httpx.AsyncClient:
        self._http: httpx.AsyncClient | None = httpx.AsyncClient(**self._http_options)
        return self._http

    def _forget_http(self) -> None:
        self._http = None

    def _new_sender(self) -> None:
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    def _connected(self) -> httpx.AsyncClient:
        """The HTTP client, made again on first use after a fork (one loop: no lock)."""
        return self._http or self._open()

    async def __aenter__(self) -> AsyncClient:
        self._start_sender()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def recommend(
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
        return await self._drive(exchange)

    async def flush(self) -> bool:
        """Send the buffered events now; False if a batch failed (it stays buffered)."""
        while self.core.buffer.waiting:
            if not await self._drive(self.core.send_batch()):
                return False
        return True

    async def aclose(self) -> None:
        """Send what is buffered (for up to ``close_timeout``), then close the connections."""
        self.core.closing = True
        if self._sender is None:
            self._sender = asyncio.create_task(self._run(), name="abgate-client-events")
        self._wake.set()
        await self._sender
        if self._http is not None:
            await self._http.aclose()

    def _start_sender(self) -> None:
        if self._sender is None and not self.core.closing:
            self._sender = asyncio.create_task(self._run(), name="abgate-client-events")

    def _wake_sender(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        await self._drive(self.core.sender())

    async def _drive(self, exchange: Exchange[T]) -> T:
        """Perform each step of ``exchange`` until it returns its value."""
        try:
            step = next(exchange)
            while True:
                if isinstance(step, Wait):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), step.seconds)
                    self._wake.clear()
                    step = exchange.send(None)
                else:
                    step = exchange.send(await self._send(step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _send(self, call: Call) -> Reply | Failure:
        try:
            async with asyncio.timeout(call.timeout):  # the whole exchange, not each read
                r = await self._connected().post(
                    call.path, content=call.body, headers=call_headers(call), timeout=call.timeout
                )
            return Reply(r.status_code, r.content)
        except TimeoutError:
            return Failure("timeout")
        except httpx.HTTPError as exc:
            return failure(exc)
