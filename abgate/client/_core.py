"""The client's logic without I/O: what to send, what an answer means, when to give up.

Both clients (``AsyncClient``, ``Client``) drive the same generators and differ only in how
they perform a step: a generator yields a ``Call`` (an HTTP POST with the seconds it may
take) or a ``Wait`` (the sender's pause), and receives the ``Reply`` or ``Failure`` of the
call. So the budget, the safe retry, the breaker, the fallback and the event policy exist
once, here, and the transports (``_async.py``, ``_sync.py``) are a dozen lines each.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import orjson

from abgate.client._breaker import CircuitBreaker
from abgate.client._buffer import EventBuffer
from abgate.client._models import Event, EventResult, Item, ModelInfo, Recommendation

log = logging.getLogger("abgate.client")

RECOMMEND_PATH = "/v1/recommendations"
EVENTS_PATH = "/v1/events"


@dataclass(frozen=True, slots=True)
class Call:
    """POST ``body`` to ``path``; the answer is useless after ``timeout`` seconds."""

    path: str
    body: bytes
    timeout: float
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """The sender pauses up to ``seconds`` (the transport wakes it early on a full batch)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Reply:
    """The gateway's HTTP answer."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Failure:
    """No answer. ``connect``: the request never reached the gateway, so a retry is safe."""

    reason: str
    connect: bool = False


T = TypeVar("T")
Step = Call | Wait
# A conversation with the gateway: yields steps, receives their outcome, returns a T.
Exchange = Generator[Step, Reply | Failure | None, T]


@dataclass(slots=True)
class CallStats:
    """Counters of ``recommend`` since the client was created."""

    calls: int = 0
    fallbacks: int = 0  # answers with source "client-fallback"
    retries: int = 0  # connect errors retried within the budget
    # Fallbacks after the request was sent (a timeout, a broken exchange): the gateway may
    # still have served it and logged an exposure (docs/integrators.md, "Known limits").
    late: int = 0


def utc_now() -> str:
    """Now, as the gateway's ``ts`` format (RFC 3339, UTC, microseconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _items(values: Iterable[str | Item]) -> tuple[Item, ...]:
    return tuple(v if isinstance(v, Item) else Item(v) for v in values)


def _problem(reply: Reply) -> str:
    """``HTTP 400 (field): detail`` from a problem response, whatever its body."""
    try:
        problem = orjson.loads(reply.body)
        detail = problem.get("detail") or problem.get("title") or ""
        field = problem.get("field")
    except (orjson.JSONDecodeError, AttributeError):
        detail, field = "", None
    where = f" ({field})" if field else ""
    return f"HTTP {reply.status}{where}: {detail}".rstrip(": ")


class ClientCore:
    """Request building, answer parsing, breaker, fallback and the event policy.

    Args mirror ``AsyncClient``/``Client`` (their docstrings say what each does).
    """

    def __init__(
        self,
        *,
        timeout: float = 0.3,
        defaults: Mapping[str, Sequence[str | Item]] | None = None,
        connect_retries: int = 1,
        breaker: CircuitBreaker | None = None,
        max_buffered_events: int = 10_000,
        event_batch_size: int = 100,
        flush_interval: float = 1.0,
        events_timeout: float = 5.0,
        max_backoff: float = 30.0,
        close_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        for name, value in (
            ("flush_interval", flush_interval),
            ("events_timeout", events_timeout),
            ("max_backoff", max_backoff),
            ("close_timeout", close_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if connect_retries < 0:
            raise ValueError(f"connect_retries must be 0 or more, got {connect_retries}")
        self.timeout = timeout
        self.defaults = {s: _items(v) for s, v in (defaults or {}).items()}
        self.connect_retries = connect_retries
        self.breaker = breaker or CircuitBreaker()
        self.buffer = EventBuffer(max_buffered_events, event_batch_size)
        self.flush_interval = flush_interval
        self.events_timeout = events_timeout
        self.max_backoff = max_backoff
        self.close_timeout = close_timeout
        self.clock = clock
        self.stats = CallStats()
        self.last_good: dict[str, tuple[Item, ...]] = {}
        self.closing = False
        self.send_failures = 0  # consecutive failed batches: the sender backs off

    # --- recommendations -------------------------------------------------------------------

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
    ) -> Exchange[Recommendation]:
        """Ask the gateway within the budget; answer from the fallback when it cannot."""
        self.stats.calls += 1
        exclude = tuple(exclude)
        deadline = self.clock() + (self.timeout if timeout is None else timeout)
        if not self.breaker.allow(self.clock()):
            return self.fallback(surface, unit_id, exclude, limit, "circuit open")
        body: dict[str, object] = {"surface": surface, "unit_id": unit_id}
        if exclude:
            body["exclude"] = exclude
        if limit is not None:
            body["limit"] = limit
        if attributes:
            body["attributes"] = attributes
        payload = orjson.dumps(body)
        retries = self.connect_retries
        while True:
            left = deadline - self.clock()
            if left <= 0:
                self.breaker.failure(self.clock())
                return self.fallback(surface, unit_id, exclude, limit, "timeout")
            reply = yield Call(RECOMMEND_PATH, payload, left, request_id)
            if isinstance(reply, Reply):
                return self._answer(surface, unit_id, exclude, limit, reply)
            if reply is not None and reply.connect:
                if retries > 0 and deadline - self.clock() > 0:
                    retries -= 1
                    self.stats.retries += 1
                    continue
            else:  # the request may have reached the gateway, which may serve and log it
                self.stats.late += 1
            self.breaker.failure(self.clock())
            reason = reply.reason if reply is not None else "no answer"
            return self.fallback(surface, unit_id, exclude, limit, reason)

    def _answer(
        self,
        surface: str,
        unit_id: str,
        exclude: tuple[str, ...],
        limit: int | None,
        reply: Reply,
    ) -> Recommendation:
        if reply.status != 200:
            if reply.status >= 500:
                self.breaker.failure(self.clock())
            else:  # the gateway is up: a 4xx is about this request (a 429 about this caller)
                self.breaker.success()
                if reply.status != 429:
                    log.warning(
                        "gateway refused a recommendations request",
                        extra={"status": reply.status, "surface": surface},
                    )
            return self.fallback(surface, unit_id, exclude, limit, _problem(reply))
        try:
            data = orjson.loads(reply.body)
            model = data.get("model")
            answer = Recommendation(
                surface=data["surface"],
                unit_id=data["unit_id"],
                items=tuple(Item(i["id"], i.get("score")) for i in data["items"]),
                source=data["source"],
                request_id=data.get("request_id"),
                experiment=data.get("experiment"),
                variant=data.get("variant"),
                model=ModelInfo(model["name"], model["version"]) if model else None,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            self.breaker.failure(self.clock())
            return self.fallback(surface, unit_id, exclude, limit, f"malformed answer: {exc!r}")
        self.breaker.success()
        if answer.items:
            self.last_good[surface] = answer.items
        return answer

    def fallback(
        self,
        surface: str,
        unit_id: str,
        exclude: tuple[str, ...],
        limit: int | None,
        reason: str,
    ) -> Recommendation:
        """The caller's default list for ``surface``, else the last good answer on it, else
        nothing; with the exclusions removed and cut to ``limit``."""
        self.stats.fallbacks += 1
        items = self.defaults.get(surface) or self.last_good.get(surface, ())
        if exclude:
            dropped = set(exclude)
            items = tuple(i for i in items if i.id not in dropped)
        if limit is not None:
            items = items[:limit]
        return Recommendation(surface, unit_id, items, "client-fallback", error=reason)

    def after_fork(self) -> None:
        """In a forked child: start empty. The parent's buffered events are the parent's to
        send (a child resending them would send each twice), and its counters and breaker
        describe the parent's calls; locks held by the parent's threads at the fork would
        never be released in the child, so each is made anew."""
        self.buffer = EventBuffer(self.buffer.max_events, self.buffer.batch_size)
        self.breaker = CircuitBreaker(self.breaker.threshold, self.breaker.reset_after)
        self.stats = CallStats()
        self.send_failures = 0

    # --- events ----------------------------------------------------------------------------

    def event(
        self,
        unit_id: str,
        name: str,
        value: float | None,
        item_id: str | None,
        ts: datetime | str | None,
    ) -> Event:
        """A new event with a fresh ``event_id``; ValueError naming a bad argument."""
        for field, text in (("unit_id", unit_id), ("name", name)):
            if not isinstance(text, str) or not text:
                raise ValueError(f"event '{field}' must be a non-empty string, got {text!r}")
        if item_id is not None and (not isinstance(item_id, str) or not item_id):
            raise ValueError(f"event 'item_id' must be a non-empty string, got {item_id!r}")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"event 'value' must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"event 'value' must be finite, got {value!r}")
            value = float(value)
        if isinstance(ts, datetime):
            if ts.tzinfo is None:
                raise ValueError("event 'ts' needs a time zone (e.g. datetime.now(UTC))")
            ts = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return Event(unit_id, name, uuid.uuid4().hex, ts or utc_now(), value, item_id)

    def track(self, event: Event) -> tuple[bool, bool]:
        """Buffer ``event``: whether it was buffered, and whether the sender should wake now
        (a full batch waits and the sender is not backing off)."""
        if not self.buffer.add(event):
            log.warning("event buffer full: event refused", extra={"event_name": event.name})
            return False, False
        return True, self.buffer.batch_ready and self.send_failures == 0

    def send_batch(self, timeout: float | None = None) -> Exchange[bool]:
        """Send the next batch; True when the gateway gave an answer for it."""
        batch = self.buffer.take()
        if not batch:
            return True
        body = orjson.dumps([e.as_json() for e in batch])
        reply = yield Call(EVENTS_PATH, body, timeout or self.events_timeout)
        results = self._event_results(batch, reply)
        self.buffer.settle(batch, results)
        return results is not None

    def _event_results(
        self, batch: list[Event], reply: Reply | Failure | None
    ) -> list[EventResult] | None:
        """Per element: the gateway's results; None when the batch must be resent whole."""
        if not isinstance(reply, Reply):
            self.buffer.stats.last_error = reply.reason if reply else "no answer"
            return None
        if reply.status in (400, 413):  # the request as a whole is refused: resending is futile
            reason = _problem(reply)
            log.error("gateway refused a batch of events", extra={"error": reason})
            return [
                EventResult(i, "rejected", e.event_id, None, reason) for i, e in enumerate(batch)
            ]
        if reply.status not in (202, 503):
            self.buffer.stats.last_error = _problem(reply)
            return None
        try:
            data = orjson.loads(reply.body)
            if "results" in data:
                results = [
                    EventResult(
                        r["index"], r["status"], r.get("event_id"), r.get("field"), r.get("detail")
                    )
                    for r in data["results"]
                ]
            else:  # a gateway before per-element answers: the first `accepted` were queued
                accepted = data["accepted"]
                results = [
                    EventResult(i, "accepted" if i < accepted else "dropped", e.event_id)
                    for i, e in enumerate(batch)
                ]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            self.buffer.stats.last_error = _problem(reply)
            return None  # e.g. an overloaded 503 problem
        if [r.index for r in results] != list(range(len(batch))):
            return None
        for r in results:
            if r.status == "rejected":
                log.error(
                    "gateway rejected an event",
                    extra={"field": r.field, "detail": r.detail, "event_id": r.event_id},
                )
        return results

    def backoff(self) -> float:
        """The sender's next pause: the flush interval, doubled per failed batch in a row."""
        if self.send_failures == 0:
            return self.flush_interval
        return min(self.flush_interval * float(2 ** min(self.send_failures, 30)), self.max_backoff)

    def sender(self) -> Exchange[None]:
        """The background sender: batches on a timer (or a full batch), back off on failure;
        once ``closing``, send until empty or ``close_timeout``, then count the rest lost."""
        while not self.closing:
            yield Wait(self.backoff())
            while self.buffer.waiting and not self.closing:
                ok = yield from self.send_batch()
                self.send_failures = 0 if ok else self.send_failures + 1
                if not ok:
                    break
        deadline = self.clock() + self.close_timeout
        pause = 0.05
        while self.buffer.waiting and (left := deadline - self.clock()) > 0:
            if not (yield from self.send_batch(min(self.events_timeout, left))):
                yield Wait(min(pause, max(deadline - self.clock(), 0)))
                pause = min(pause * 2, 1.0)
        lost = self.buffer.give_up()
        if lost:
            log.error(
                "events lost at close: the gateway stayed unreachable",
                extra={"lost": lost, "error": self.buffer.stats.last_error},
            )
