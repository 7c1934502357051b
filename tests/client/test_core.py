"""The client's core without I/O: each test plays the gateway's side of a conversation."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import orjson
import pytest

from abgate.client import CircuitBreaker, Item
from abgate.client._core import (
    EVENTS_PATH,
    RECOMMEND_PATH,
    Call,
    ClientCore,
    Exchange,
    Failure,
    Reply,
    Wait,
)

T = TypeVar("T")

ANSWER = {
    "request_id": "r1",
    "surface": "home_top",
    "unit_id": "u1",
    "experiment": "home-exp",
    "variant": "treatment",
    "model": {"name": "home_recs", "version": "2"},
    "items": [{"id": "a", "score": 0.9}, {"id": "b", "score": 0.8}],
    "source": "cache",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def play(exchange: Exchange[T], gateway: Callable[[Call], Reply | Failure]) -> tuple[T, list[Call]]:
    """Run ``exchange`` with ``gateway`` answering each call; the value and the calls made."""
    calls: list[Call] = []
    try:
        step = next(exchange)
        while True:
            if isinstance(step, Wait):
                step = exchange.send(None)
            else:
                calls.append(step)
                step = exchange.send(gateway(step))
    except StopIteration as stop:
        return stop.value, calls


def ok(call: Call) -> Reply:
    return Reply(200, orjson.dumps(ANSWER))


def test_answer_is_parsed_into_the_typed_record() -> None:
    core = ClientCore()
    rec, calls = play(core.recommend("home_top", "u1", exclude=["x"], limit=2), ok)
    assert calls[0].path == RECOMMEND_PATH
    assert orjson.loads(calls[0].body) == {
        "surface": "home_top",
        "unit_id": "u1",
        "exclude": ["x"],
        "limit": 2,
    }
    assert rec.item_ids == ["a", "b"] and rec.items[0] == Item("a", 0.9)
    assert (rec.source, rec.variant, rec.model.version) == ("cache", "treatment", "2")
    assert not rec.is_fallback


def test_a_connect_error_is_retried_a_timeout_is_not() -> None:
    core = ClientCore(connect_retries=1)
    replies = iter([Failure("refused", connect=True), Reply(200, orjson.dumps(ANSWER))])
    rec, calls = play(core.recommend("home_top", "u1"), lambda c: next(replies))
    assert len(calls) == 2 and rec.source == "cache"
    assert core.stats.retries == 1

    rec, calls = play(core.recommend("home_top", "u1"), lambda c: Failure("timeout"))
    assert len(calls) == 1 and rec.is_fallback and rec.error == "timeout"


def test_only_fallbacks_after_a_request_was_sent_count_as_late() -> None:
    core = ClientCore(connect_retries=1)
    play(core.recommend("home_top", "u1"), lambda c: Failure("refused", connect=True))
    play(core.recommend("home_top", "u1"), lambda c: Reply(400, b"{}"))
    assert (core.stats.fallbacks, core.stats.late) == (2, 0)
    play(core.recommend("home_top", "u1"), lambda c: Failure("timeout"))
    play(core.recommend("home_top", "u1"), lambda c: Failure("RemoteProtocolError: closed"))
    assert (core.stats.fallbacks, core.stats.late) == (4, 2)


def test_each_retry_gets_only_what_is_left_of_the_budget() -> None:
    clock = FakeClock()
    core = ClientCore(timeout=0.3, connect_retries=3, clock=clock)

    def slow_refusal(call: Call) -> Failure:
        clock.now += 0.2
        return Failure("refused", connect=True)

    rec, calls = play(core.recommend("home_top", "u1"), slow_refusal)
    assert [round(c.timeout, 3) for c in calls] == [0.3, 0.1]
    assert rec.is_fallback


def test_fallback_prefers_the_callers_default_then_the_last_good_answer() -> None:
    core = ClientCore(defaults={"cart_upsell": ["d1", "d2", "d3"]})
    play(core.recommend("home_top", "u1"), ok)
    down = lambda c: Failure("refused", connect=True)  # noqa: E731
    rec, _ = play(core.recommend("home_top", "u9", exclude=["a"]), down)
    assert (rec.source, rec.item_ids, rec.unit_id) == ("client-fallback", ["b"], "u9")
    assert rec.experiment is None and rec.variant is None and rec.request_id is None
    rec, _ = play(core.recommend("cart_upsell", "u9", limit=2), down)
    assert rec.item_ids == ["d1", "d2"]
    rec, _ = play(core.recommend("unknown", "u9"), down)
    assert rec.items == ()
    assert core.stats.fallbacks == 3


def test_a_refusal_falls_back_with_the_problem_and_does_not_open_the_breaker() -> None:
    core = ClientCore(breaker=CircuitBreaker(threshold=1))
    problem = {"type": "x", "title": "Bad", "status": 400, "detail": "bad limit", "field": "limit"}
    rec, _ = play(core.recommend("home_top", "u1"), lambda c: Reply(400, orjson.dumps(problem)))
    assert rec.is_fallback and rec.error == "HTTP 400 (limit): bad limit"
    assert core.breaker.state == "closed"
    rec, _ = play(core.recommend("home_top", "u1"), lambda c: Reply(503, b"{}"))
    assert rec.error == "HTTP 503" and core.breaker.state == "open"


def test_breaker_opens_after_the_threshold_then_lets_one_probe_through() -> None:
    clock = FakeClock()
    core = ClientCore(breaker=CircuitBreaker(threshold=2, reset_after=5), clock=clock)
    down = lambda c: Failure("timeout")  # noqa: E731
    for _ in range(2):
        play(core.recommend("home_top", "u1"), down)
    assert core.breaker.state == "open"
    rec, calls = play(core.recommend("home_top", "u1"), ok)
    assert calls == [] and rec.error == "circuit open"
    clock.now += 5
    assert core.breaker.allow(clock.now)  # the probe
    assert not core.breaker.allow(clock.now)  # only one
    core.breaker.failure(clock.now)
    assert core.breaker.state == "open"
    clock.now += 5
    rec, calls = play(core.recommend("home_top", "u1"), ok)
    assert len(calls) == 1 and rec.source == "cache" and core.breaker.state == "closed"


def test_malformed_answer_falls_back() -> None:
    core = ClientCore()
    rec, _ = play(core.recommend("home_top", "u1"), lambda c: Reply(200, b'{"items": 3}'))
    assert rec.is_fallback and rec.error.startswith("malformed answer")


def events_answer(statuses: list[str]) -> Callable[[Call], Reply]:
    def answer(call: Call) -> Reply:
        sent = orjson.loads(call.body)
        results = [
            {"index": i, "status": s, "event_id": e["event_id"]}
            | ({"field": f"[{i}].name", "detail": "bad"} if s == "rejected" else {})
            for i, (s, e) in enumerate(zip(statuses, sent, strict=True))
        ]
        accepted = statuses.count("accepted")
        status = 503 if "dropped" in statuses else 202
        return Reply(status, orjson.dumps({"accepted": accepted, "results": results}))

    return answer


def test_events_carry_fresh_ids_and_a_failed_batch_is_resent_with_the_same_ids() -> None:
    core = ClientCore(event_batch_size=2)
    for i in range(3):
        assert core.track(core.event(f"u{i}", "purchase", 1, None, None))[0]
    ok_, calls = play(core.send_batch(), lambda c: Failure("timeout"))
    assert not ok_ and core.buffer.waiting == 3
    first = [e["event_id"] for e in orjson.loads(calls[0].body)]
    ok_, calls = play(core.send_batch(), events_answer(["accepted", "accepted"]))
    assert ok_ and calls[0].path == EVENTS_PATH
    assert [e["event_id"] for e in orjson.loads(calls[0].body)] == first
    assert len(set(first)) == 2 and all(len(i) == 32 for i in first)
    assert core.buffer.waiting == 1 and core.buffer.stats.sent == 2


def test_rejected_elements_are_dropped_dropped_ones_resent() -> None:
    core = ClientCore(event_batch_size=3)
    for i in range(3):
        core.track(core.event(f"u{i}", "purchase", None, None, None))
    play(core.send_batch(), events_answer(["accepted", "rejected", "dropped"]))
    stats = core.buffer.stats
    assert (stats.sent, stats.rejected, core.buffer.waiting) == (1, 1, 1)
    assert stats.last_error == "[1].name: bad"


def test_a_full_buffer_refuses_new_events_and_counts_them() -> None:
    core = ClientCore(max_buffered_events=2, event_batch_size=2)
    results = [core.track(core.event("u", "click", None, None, None))[0] for _ in range(3)]
    assert results == [True, True, False]
    assert core.buffer.stats.refused == 1 and core.buffer.stats.tracked == 3


def test_in_flight_events_count_against_the_bound() -> None:
    core = ClientCore(max_buffered_events=2, event_batch_size=2)
    for _ in range(2):
        core.track(core.event("u", "click", None, None, None))
    batch = core.buffer.take()
    assert not core.track(core.event("u", "click", None, None, None))[0]
    core.buffer.settle(batch, None)
    assert core.buffer.waiting == 2


def test_close_sends_what_it_can_and_counts_the_rest_lost() -> None:
    clock = FakeClock()
    core = ClientCore(event_batch_size=1, close_timeout=1.0, clock=clock)
    for _ in range(2):
        core.track(core.event("u", "click", None, None, None))
    core.closing = True

    def down(call: Call) -> Failure:
        clock.now += 0.6
        return Failure("refused", connect=True)

    play(core.sender(), down)
    assert core.buffer.stats.lost == 2 and len(core.buffer) == 0


def test_sender_backs_off_while_batches_fail() -> None:
    core = ClientCore(flush_interval=1, max_backoff=5)
    assert core.backoff() == 1
    core.send_failures = 2
    assert core.backoff() == 4
    core.send_failures = 10
    assert core.backoff() == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "purchase", None, None, None), "'unit_id'"),
        (("u", "purchase", float("nan"), None, None), "'value' must be finite"),
        (("u", "purchase", True, None, None), "'value' must be a number"),
    ],
)
def test_bad_events_are_refused_naming_the_argument(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientCore().event(*args)


def test_bad_options_are_refused_naming_the_option() -> None:
    with pytest.raises(ValueError, match="timeout"):
        ClientCore(timeout=0)
    with pytest.raises(ValueError, match="batch_size"):
        ClientCore(max_buffered_events=10, event_batch_size=11)
