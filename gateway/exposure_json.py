"""An exposure's ``jsonPayload`` encoded straight from the request's fields.

The request path does not build an ``Exposure`` record and its payload dict for every served
answer: most of an exposure's fields are the same for every unit of one route (experiment,
variant, surface, model and version, configuration version, phase and weights, forced,
holdout), so their JSON is encoded once per route and served model, and only the fields of the
request (ids, timestamp, unit, items, source, bucket, attributes) are encoded per exposure.
The bytes are exactly ``orjson.dumps(Exposure(...).as_payload())``, key order included
(tests/gateway/test_exposure_json.py holds the two equal for every record shape).

Measured with callgrind (docs/benchmarks.md, "Exposure logging, second pass"): an exposure
took ~61,000 instructions with the record, ~50,000 without.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import orjson

if TYPE_CHECKING:
    from experiments.allocation import Phase
    from experiments.modelref import ModelVersion
    from experiments.routing import Route

MAX_TEMPLATES = 4096  # routes x served versions held; forced units each have their own route


class EncodedExposure(NamedTuple):
    """An exposure whose ``jsonPayload`` is already encoded (what sinks write of it)."""

    event_id: str
    ts: str
    payload: bytes  # the JSON object, as ``orjson.dumps(Exposure(...).as_payload())``


class _Template(NamedTuple):
    route: Route  # held so that its id() is not reused while the template is cached
    phase: Phase | None
    experiment: bytes  # ',"experiment":…,"variant":…,"unit_id":'
    model: bytes  # ',"surface":…,"model":…,"model_version":…,"items":'
    config: bytes  # ',"config_version":…,"source":'
    phase_part: bytes  # '[,"forced":true][,"phase":…,"weights":…]'
    holdout: bytes  # '[,"holdout":true]'


_dumps = orjson.dumps
_SOURCES = {s: _dumps(s) for s in ("cache", "local", "db", "fallback", "none", "unavailable")}


class ExposureEncoder:
    """Exposure payloads as JSON bytes, with each route's constant part encoded once."""

    def __init__(self) -> None:
        self._templates: dict[tuple[int, str, str, int], _Template] = {}

    def payload(
        self,
        event_id: str,
        ts: str,
        route: Route,
        model: ModelVersion,
        phase: Phase | None,
        unit_id: str,
        items: Sequence[str],
        source: str,
        request_id: str,
        bucket: int,
        attributes: Mapping[str, object] | None,
    ) -> bytes:
        """The ``jsonPayload`` of the exposure of ``route`` served from ``model``.

        ``event_id`` and ``ts`` are the gateway's own (gateway/ids.py, gateway/clock.py: hex
        digits, a timestamp) and are written without JSON escaping."""
        key = (id(route), model.name, model.version, id(phase))
        t = self._templates.get(key)
        if t is None or t.route is not route or t.phase is not phase:
            t = self._template(key, route, model, phase)
        return b"".join(
            (
                f'{{"type":"exposure","event_id":"{event_id}","ts":"{ts}"'.encode(),
                t.experiment,
                _dumps(unit_id),
                t.model,
                _dumps(items),
                t.config,
                _SOURCES.get(source) or _dumps(source),
                b',"request_id":',
                _dumps(request_id),
                t.phase_part,
                b',"bucket":%d' % bucket if bucket >= 0 else b"",
                t.holdout,
                b',"attributes":' + _dumps(attributes) if attributes else b"",
                b"}",
            )
        )

    def _template(
        self,
        key: tuple[int, str, str, int],
        route: Route,
        model: ModelVersion,
        phase: Phase | None,
    ) -> _Template:
        phase_part = b',"forced":true' if route.forced else b""
        if phase is not None and phase.id:
            phase_part += (
                b',"phase":' + _dumps(phase.id) + b',"weights":' + _dumps(list(phase.weights))
            )
        t = _Template(
            route,
            phase,
            b',"experiment":'
            + _dumps(route.experiment)
            + b',"variant":'
            + _dumps(route.variant)
            + b',"unit_id":',
            b',"surface":'
            + _dumps(route.surface.name)
            + b',"model":'
            + _dumps(model.name)
            + b',"model_version":'
            + _dumps(model.version)
            + b',"items":',
            b',"config_version":' + _dumps(route.config_version) + b',"source":',
            phase_part,
            b',"holdout":true' if route.holdout else b"",
        )
        if len(self._templates) >= MAX_TEMPLATES:
            self._templates.clear()  # configurations replaced: their routes are gone
        self._templates[key] = t
        return t
