"""The request parser: what the backends cannot store is refused naming the field, events' ts
must fall in the accepted window, and no input whatsoever makes it raise anything but BadRequest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.parsing import (
    EVENTS_MAX_AGE,
    EVENTS_MAX_AHEAD,
    parse_events,
    parse_recommendation,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OK = {"surface": "home_top", "unit_id": "u1"}
EVENT = {"unit_id": "u1", "name": "purchase"}


def refused(parse, body: object) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(orjson.dumps(body))
    return caught.value


def event_refused(body: object) -> BadRequest:
    """The refusal of a single event (raised) or of a list's one bad element (in its place)."""
    if not isinstance(body, list):
        return refused(lambda b: parse_events(b, NOW), body)
    parsed = parse_events(orjson.dumps(body), NOW)
    [error] = [p for p in parsed if isinstance(p, BadRequest)]
    return error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**OK, "unit_id": "x\x00y"}, "unit_id"),
        ({**OK, "surface": "home\x00"}, "surface"),
        ({**OK, "exclude": ["a", "\x00b"]}, "exclude[1]"),
        ({**OK, "attributes": {"country": "J\x00P"}}, "attributes.country"),
        ({**OK, "attributes": {"c\x00": "JP"}}, "attributes"),
    ],
)
def test_a_nul_in_a_recommendation_field_is_refused_naming_it(body, field) -> None:
    error = refused(parse_recommendation, body)
    assert error.field == field and "NUL" in error.detail


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**EVENT, "unit_id": "\x00"}, "unit_id"),
        ({**EVENT, "name": "buy\x00"}, "name"),
        ({**EVENT, "item_id": "sku\x00"}, "item_id"),
        ([EVENT, {**EVENT, "item_id": "a\x00"}], "[1].item_id"),
    ],
)
def test_a_nul_in_an_event_field_is_refused_naming_it(body, field) -> None:
    error = event_refused(body)
    assert error.field == field


def test_unpaired_surrogates_never_get_through() -> None:
    # orjson refuses them in JSON text; the check behind it refuses them in any str
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_recommendation(b'{"surface": "home_top", "unit_id": "\\ud800"}')
    from gateway.parsing import check_storable

    with pytest.raises(BadRequest, match="unpaired surrogate") as caught:
        check_storable("a\udc80", "unit_id")
    assert caught.value.field == "unit_id"


def test_characters_postgres_stores_are_accepted() -> None:
    unit = "\x01\x7f\u200b\ufffe\U0010ffff é"
    assert parse_recommendation(orjson.dumps({**OK, "unit_id": unit})).unit_id == unit


@pytest.mark.parametrize(
    "ts",
    [
        "0001-01-01T00:00:00+09:00",  # OverflowError in astimezone before
        "9999-12-31T23:59:59-09:00",
        "0999-06-01T05:00:00Z",  # made archive paths like 999-/6-/…
        "1970-01-01T00:00:00Z",
        (NOW - EVENTS_MAX_AGE - timedelta(seconds=1)).isoformat(),
        (NOW + EVENTS_MAX_AHEAD + timedelta(seconds=1)).isoformat(),
    ],
)
def test_a_ts_outside_the_window_is_refused_naming_the_field(ts: str) -> None:
    error = event_refused([EVENT, {**EVENT, "ts": ts}])
    assert error.field == "[1].ts" and "window" in error.detail


@pytest.mark.parametrize(
    "moment",
    [NOW - EVENTS_MAX_AGE, NOW - timedelta(days=3), NOW, NOW + EVENTS_MAX_AHEAD],
)
def test_a_ts_inside_the_window_is_kept_in_utc(moment: datetime) -> None:
    local = moment.astimezone(UTC).astimezone(datetime.now().astimezone().tzinfo)
    [event] = parse_events(orjson.dumps({**EVENT, "ts": local.isoformat()}), NOW)
    assert event.ts == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- arbitrary input -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from(["surface", "unit_id", "exclude", "limit", "attributes"]) | st.text()
rec_bodies = st.dictionaries(keys, json_values, max_size=6)
event_keys = st.sampled_from(["unit_id", "name", "value", "item_id", "ts", "event_id"])
timestamps = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
event_bodies = st.dictionaries(event_keys, json_values | timestamps, max_size=6)


def dumps(value: object) -> bytes:
    """JSON as any client may send it (big integers, NaN and surrogate escapes included)."""
    return json.dumps(value).encode()


def storable(s: str) -> bool:
    return "\x00" not in s and s.encode("utf-8", "strict") is not None


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=200), rec_bodies.map(dumps)))
def test_any_recommendation_body_parses_or_is_a_bad_request(body: bytes) -> None:
    try:
        req = parse_recommendation(body)
    except BadRequest as exc:
        assert exc.status == 400
        return
    assert storable(req.surface) and storable(req.unit_id)
    assert all(storable(x) for x in req.exclude)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        event_bodies.map(dumps),
        st.lists(event_bodies, max_size=3).map(dumps),
    )
)
def test_any_events_body_parses_or_is_a_bad_request(body: bytes) -> None:
    try:
        events = parse_events(body, NOW)
    except BadRequest as exc:
        assert exc.status == 400
        return
    for e in events:
        if isinstance(e, BadRequest):  # an element of a list, rejected on its own
            assert e.field is not None and e.field.startswith("[")
            continue
        assert storable(e.unit_id) and storable(e.name)
        assert e.item_id is None or storable(e.item_id)
        moment = datetime.fromisoformat(e.ts.replace("Z", "+00:00"))
        assert NOW - EVENTS_MAX_AGE <= moment <= NOW + EVENTS_MAX_AHEAD
