"""Parsing and validating request bodies, with errors that name the field.

Hand-written over orjson rather than a schema library: the hot path parses one small object,
and each check gives the caller a precise ``field`` in the problem response.

What the backends cannot store is refused here, at the edge, so that it never reaches them:
Postgres ``text`` refuses the NUL character (``CharacterNotInRepertoireError``) and unpaired
surrogates (asyncpg cannot encode them; orjson already refuses them in JSON). A NUL in a unit id
used to reach Postgres, fail there, and open the results store's breaker for every other request.
An event's ``ts`` must fall in a window around the gateway's clock (``EVENTS_MAX_AGE`` back,
``EVENTS_MAX_AHEAD`` forward; docs/integrators.md says why), which also keeps archive paths to
4-digit years and recent hours.

gateway/openapi.py states these rules from the constants below (``STORABLE_PATTERN``,
``TS_PATTERN``, the limits), so that the document and this parser cannot drift;
tests/gateway/test_contract.py holds them equal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from experiments import Outcome, new_event_id, utc_timestamp
from gateway.errors import BadRequest

MAX_UNIT_ID = 256
MAX_EXCLUSIONS = 1000
MAX_EVENTS = 1000
MAX_NAME = 128
LIMIT_MAX = 200
MAX_SURFACE = 128
# Also the OpenAPI pattern (gateway/openapi.py); fullmatch, as a JSON Schema pattern anchors.
EVENT_ID_PATTERN = "[A-Za-z0-9_-]{1,64}"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
# Late events are real (offline conversions, billing runs): a month of 30-day attribution plus
# five days of reporting delay. Ahead: clock skew between callers and the gateway.
EVENTS_MAX_AGE = timedelta(days=35)
EVENTS_MAX_AHEAD = timedelta(hours=1)
# The OpenAPI pattern of every free-text string: no U+0000, the one character check_storable
# refuses that JSON Schema can state. An unpaired surrogate cannot even be written in a valid
# request: the body must be I-JSON (RFC 7493), so orjson refuses "\ud800" as invalid JSON.
STORABLE_PATTERN = r"^[^\u0000]*$"
# RFC 3339 date-time with what it leaves open closed, the parser's syntax and the document's
# pattern (beside format: date-time): ASCII digits, 'T' or 't', seconds 00-59 (a leap second
# has no datetime), an offset 'Z', 'z' or +hh:mm. datetime.fromisoformat alone is wider (a
# space, week dates, +0000, offsets with seconds) and narrower ('z').
TS_PATTERN = (
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-5][0-9])(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_TS = re.compile(TS_PATTERN)


def check_storable(value: str, field: str) -> None:
    """Raise BadRequest if ``value`` holds a character that Postgres ``text`` refuses: NUL, or an
    unpaired surrogate (which has no UTF-8 encoding)."""
    if "\x00" in value:
        raise BadRequest(
            f"'{field}' contains a NUL character (U+0000), which cannot be stored", field=field
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(
                f"'{field}' contains an unpaired surrogate, which cannot be stored", field=field
            ) from None


class RecommendationRequest(NamedTuple):
    """A validated ``POST /v1/recommendations`` body (limit checked later against the surface)."""

    surface: str
    unit_id: str
    exclude: frozenset[str]
    limit: int | None
    attributes: dict[str, object]


def _decode(body: bytes) -> object:
    if not body:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def _string(
    obj: dict[str, object], name: str, *, required: bool, max_len: int, where: str = ""
) -> str | None:
    field = f"{where}{name}"
    value = obj.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{field}' is required", field=field)
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{field}' must be a string", field=field)
    if not value:
        raise BadRequest(f"'{field}' must not be empty", field=field)
    if len(value) > max_len:
        raise BadRequest(f"'{field}' is longer than {max_len} characters", field=field)
    check_storable(value, field)
    return value


def _required(obj: dict[str, object], name: str, *, max_len: int, where: str = "") -> str:
    value = _string(obj, name, required=True, max_len=max_len, where=where)
    if value is None:  # unreachable: _string raises for a missing required field
        raise BadRequest(f"'{where}{name}' is required", field=f"{where}{name}")
    return value


def parse_recommendation(body: bytes) -> RecommendationRequest:
    """Validate a recommendations request; raise BadRequest naming the field."""
    obj = _decode(body)
    if not isinstance(obj, dict):
        raise BadRequest("the body must be a JSON object")
    surface = _required(obj, "surface", max_len=MAX_SURFACE)
    unit_id = _required(obj, "unit_id", max_len=MAX_UNIT_ID)
    exclude_raw = obj.get("exclude")
    if exclude_raw is None:
        exclude: frozenset[str] = frozenset()
    else:
        if not isinstance(exclude_raw, list):
            raise BadRequest("'exclude' must be a list of item ids", field="exclude")
        if len(exclude_raw) > MAX_EXCLUSIONS:
            raise BadRequest(
                f"'exclude' holds {len(exclude_raw)} ids; at most {MAX_EXCLUSIONS}", field="exclude"
            )
        for i, x in enumerate(exclude_raw):
            if not isinstance(x, str):
                raise BadRequest(f"'exclude[{i}]' must be a string", field=f"exclude[{i}]")
            check_storable(x, f"exclude[{i}]")
        exclude = frozenset(exclude_raw)
    limit = obj.get("limit")
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # JSON Schema's integer: 3.0 is 3 (the OpenAPI document says integer)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise BadRequest("'limit' must be an integer", field="limit")
    if limit is not None and not 1 <= limit <= LIMIT_MAX:
        raise BadRequest(f"'limit' must be between 1 and {LIMIT_MAX}", field="limit")
    attributes = obj.get("attributes")
    if attributes is None:
        attributes = {}
    elif not isinstance(attributes, dict):
        raise BadRequest("'attributes' must be an object", field="attributes")
    else:
        for k, v in attributes.items():
            check_storable(k, "attributes")
            if v is not None and not isinstance(v, str | int | float | bool):
                raise BadRequest(
                    f"'attributes.{k}' must be a string, number or boolean", field=f"attributes.{k}"
                )
            if isinstance(v, str):
                check_storable(v, f"attributes.{k}")
    unknown = set(obj) - {"surface", "unit_id", "exclude", "limit", "attributes"}
    if unknown:
        name = sorted(unknown)[0]
        raise BadRequest(f"'{name}' is not a known field", field=name)
    return RecommendationRequest(surface, unit_id, exclude, limit, attributes)


def _rfc3339(value: str) -> datetime | None:
    """The moment ``value`` names if it is an RFC 3339 date-time (``TS_PATTERN``), else None."""
    match = _TS.fullmatch(value)
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    if offset in ("Z", "z"):
        offset = "+00:00"
    elif int(offset[4:]) > 59:  # fromisoformat would read +00:60 as +01:00
        return None
    try:  # month, day, hour, minute and offset hour ranges; microseconds: 6 digits at most
        return datetime.fromisoformat(f"{day}T{clock}{(fraction or '')[:7]}{offset}")
    except ValueError:
        return None


def _timestamp(value: object, field: str, now: datetime) -> str:
    if value is None:
        return utc_timestamp(now)
    if not isinstance(value, str):
        raise BadRequest(f"'{field}' must be an RFC 3339 timestamp string", field=field)
    moment = _rfc3339(value)
    if moment is None:
        if _rfc3339(value + "Z") is not None:
            raise BadRequest(f"'{field}' needs a time zone (e.g. a trailing Z)", field=field)
        raise BadRequest(
            f"'{field}' is not an RFC 3339 timestamp (2026-11-27T10:00:00Z): {value!r}",
            field=field,
        )
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+09:00 is before year 1 in UTC
        utc = None
    if utc is None or not now - EVENTS_MAX_AGE <= utc <= now + EVENTS_MAX_AHEAD:
        raise BadRequest(
            f"'{field}' is {value!r}, outside the accepted window: at most "
            f"{EVENTS_MAX_AGE.days} days before and {EVENTS_MAX_AHEAD.seconds // 3600} hour after "
            f"the gateway's clock ({utc_timestamp(now)})",
            field=field,
        )
    return utc_timestamp(utc)


def parse_events(body: bytes, now: datetime | None = None) -> list[Outcome | BadRequest]:
    """Validate an events request. ``now`` (default: the clock) anchors the window of ``ts``.

    A single object is all or nothing: an invalid one raises BadRequest. A list is validated
    element by element: an invalid element is its BadRequest, in its place, and the others
    stand. What is wrong with the body as a whole (not JSON, neither an object nor a list, an
    empty list, more than ``MAX_EVENTS``) raises BadRequest.
    """
    now = now or datetime.now(UTC)
    obj = _decode(body)
    if isinstance(obj, dict):
        return [_event(obj, "", now)]
    if not isinstance(obj, list):
        raise BadRequest("'body' must be a JSON object or a list of them", field="body")
    if not obj:
        raise BadRequest("the list of events is empty")
    if len(obj) > MAX_EVENTS:
        raise BadRequest(f"{len(obj)} events in one request; at most {MAX_EVENTS}")
    out: list[Outcome | BadRequest] = []
    for i, ev in enumerate(obj):
        try:
            out.append(_event(ev, f"[{i}].", now))
        except BadRequest as exc:
            out.append(exc)
    return out


def _event(ev: object, where: str, now: datetime) -> Outcome:
    """One event of a request; ``where`` prefixes the field names (``[3].`` in a list)."""
    if not isinstance(ev, dict):
        label = where.rstrip(".") or "body"
        raise BadRequest(f"'{label}' must be a JSON object", field=label)
    unit_id = _required(ev, "unit_id", max_len=MAX_UNIT_ID, where=where)
    name = _required(ev, "name", max_len=MAX_NAME, where=where)
    item_id = _string(ev, "item_id", required=False, max_len=MAX_UNIT_ID, where=where)
    value = ev.get("value")
    if value is not None:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise BadRequest(f"'{where}value' must be a finite number", field=f"{where}value")
        value = float(value)
    unknown = set(ev) - {"unit_id", "name", "value", "item_id", "ts", "event_id"}
    if unknown:
        field = f"{where}{sorted(unknown)[0]}"
        raise BadRequest(f"'{field}' is not a known field", field=field)
    # A caller-chosen id makes retries idempotent: readers drop duplicates by event_id.
    event_id = _string(ev, "event_id", required=False, max_len=64, where=where)
    if event_id is not None and not _EVENT_ID.fullmatch(event_id):
        field = f"{where}event_id"
        raise BadRequest(f"'{field}' may hold only letters, digits, '-' and '_'", field=field)
    ts = _timestamp(ev.get("ts"), f"{where}ts", now)
    return Outcome(event_id or new_event_id(), ts, unit_id, name, value, item_id)


def event_results(
    parsed: list[Outcome | BadRequest], put: Callable[[Outcome], bool]
) -> dict[str, Any]:
    """Queue each valid event with ``put`` (False: the log is full) and answer per element:
    ``{"accepted", "rejected", "dropped", "results": [{"index", "status", ...}]}``, where
    ``status`` is ``accepted`` or ``dropped`` (with the ``event_id``: resend it) or
    ``rejected`` (with the ``field`` and ``detail``: do not resend it)."""
    results: list[dict[str, object]] = []
    counts = {"accepted": 0, "rejected": 0, "dropped": 0}
    for i, item in enumerate(parsed):
        if isinstance(item, BadRequest):
            status = "rejected"
            result: dict[str, object] = {"index": i, "status": status, "detail": item.detail}
            if item.field is not None:
                result["field"] = item.field
        else:
            status = "accepted" if put(item) else "dropped"
            result = {"index": i, "status": status, "event_id": item.event_id}
        counts[status] += 1
        results.append(result)
    return {**counts, "results": results}
