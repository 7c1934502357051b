"""Pure pieces of the gateway: exclusion filtering, request parsing, archive paths, the LRU."""

from __future__ import annotations

import gc
import tracemalloc

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.local_cache import LocalCache, decoded_size
from gateway.parsing import parse_events, parse_recommendation
from gateway.serving import filter_items


def ranked(n: int) -> list[dict[str, object]]:
    return [{"id": f"i{k}", "score": 1 - k / n} for k in range(n)]


@given(
    n=st.integers(0, 60),
    excluded=st.sets(st.integers(0, 80), max_size=40),
    limit=st.integers(1, 50),
)
def test_filter_keeps_order_drops_exclusions_and_back_fills(
    n: int, excluded: set[int], limit: int
) -> None:
    items = ranked(n)
    exclude = frozenset(f"i{k}" for k in excluded)
    out = filter_items(items, exclude, limit)
    expected = [it for it in items if it["id"] not in exclude][:limit]
    assert out == expected
    assert len(out) == min(limit, n - len([k for k in excluded if k < n]))


def test_recommendation_request_is_parsed_with_defaults() -> None:
    req = parse_recommendation(b'{"surface": "s", "unit_id": "u"}')
    assert (req.surface, req.unit_id, req.exclude, req.limit, req.attributes) == (
        "s",
        "u",
        frozenset(),
        None,
        {},
    )


def test_events_accept_one_object_or_a_list_and_normalise_timestamps() -> None:
    [one] = parse_events(b'{"unit_id": "u", "name": "click", "ts": "2026-11-26T19:00:00+09:00"}')
    assert one.ts == "2026-11-26T10:00:00.000000Z"
    many = parse_events(orjson.dumps([{"unit_id": "u", "name": "p", "value": 3}] * 3))
    assert [e.value for e in many] == [3.0, 3.0, 3.0]
    assert len({e.event_id for e in many}) == 3


def test_nan_values_are_refused() -> None:
    with pytest.raises(BadRequest) as info:
        parse_events(b'{"unit_id": "u", "name": "p", "value": NaN}')
    assert "JSON" in info.value.detail or info.value.field == "value"


def test_local_cache_evicts_the_least_recently_used() -> None:
    cache = LocalCache(2)
    cache.put(("m", "1", "a"), ranked(1))
    cache.put(("m", "1", "b"), None)
    assert cache.get(("m", "1", "a"))[0]  # touch a: b is now the oldest
    cache.put(("m", "1", "c"), ranked(2))
    assert cache.get(("m", "1", "b")) == (False, None)
    assert cache.get(("m", "1", "a"))[0] and cache.get(("m", "1", "c"))[0]
    assert len(cache) == 2


def test_disabled_local_cache_stores_nothing() -> None:
    for cache in (LocalCache(0), LocalCache(100, max_bytes=0)):
        cache.put(("m", "1", "a"), ranked(1), 10)
        assert len(cache) == 0


def test_local_cache_keeps_within_its_memory_budget() -> None:
    cache = LocalCache(1000, max_bytes=250)
    for unit in "abcde":
        cache.put(("m", "1", unit), ranked(1), 100)
    assert len(cache) == 2 and cache.bytes == 200  # the three oldest were evicted
    assert cache.get(("m", "1", "d"))[0] and cache.get(("m", "1", "e"))[0]
    cache.put(("m", "1", "e"), ranked(2), 50)  # replacing an entry counts its new size only
    assert cache.bytes == 150
    cache.put(("m", "1", "big"), ranked(3), 400)  # larger than the budget: kept alone
    assert len(cache) == 1 and cache.bytes == 400


@pytest.mark.parametrize(("n", "id_len"), [(10, 9), (100, 5), (100, 36), (500, 16)])
def test_decoded_size_estimates_the_memory_of_a_list(n: int, id_len: int) -> None:
    items = [{"id": f"{k:0{id_len}d}", "score": 1 / (k + 1)} for k in range(n)]
    raw = b"[" + b", ".join(orjson.dumps(it).replace(b",", b", ") for it in items) + b"]"
    copies = max(20, 20_000 // n)  # several MB in all: other threads' allocations are noise
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    lists = [orjson.loads(raw) for _ in range(copies)]
    measured = (tracemalloc.get_traced_memory()[0] - before) / copies
    tracemalloc.stop()
    assert 0.95 <= decoded_size(lists[0], len(raw)) / measured <= 1.3


def test_a_caller_event_id_is_kept_so_retries_deduplicate() -> None:
    [a] = parse_events(b'{"unit_id": "u", "name": "p", "event_id": "order-123_1"}')
    [b] = parse_events(b'{"unit_id": "u", "name": "p", "event_id": "order-123_1"}')
    assert a.event_id == b.event_id == "order-123_1"
    with pytest.raises(BadRequest) as info:
        parse_events(b'{"unit_id": "u", "name": "p", "event_id": "bad id!"}')
    assert info.value.field == "event_id"
