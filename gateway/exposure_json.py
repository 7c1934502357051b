"""An exposure's ``jsonPayload`` encoded straight from the request's fields.

The request path does not build an ``Exposure`` record and its payload dict for every served
answer: most of an exposure's fields are the same for every unit of one route (experiment,
variant, surface, model and version, configuration version, phase and weights, forced,
holdout), so their JSON is encoded once per route and served model, and only the fields of the
request (ids, timestamp, unit, items, source, bucket, attributes) are encoded per exposure.
The bytes are exactly ``orjson.dumps(Exposure(...).as_payload())``, key order included
(tests/gateway/test_exposure_json.py holds the two equal for every record shape).

``ExposureEncoder.log`` (the gateway's ``log_exposure``) and ``ExposureEncoder.exposure`` make
the whole record (event id, timestamp, payload, count) with one call of the compiled encoder
(gateway/_exposure.c, built at install when a C compiler is there), or with the Python code
below when it is not (``native=False``, or no compiler): the two give the same bytes. Measured
with callgrind (docs/benchmarks.md, "Exposure logging, third pass"): an exposure took ~61,000
instructions with the record, ~49,000 with this module's Python encoder, ~12,000 compiled
(queue, LogEntry line and archive write included).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple, Protocol

import orjson

from gateway.clock import UtcClock
from gateway.ids import IdGenerator

_exposure: ModuleType | None
try:
    from gateway import _exposure
except ImportError:  # built without a C compiler: the Python encoder does it all
    _exposure = None

if TYPE_CHECKING:
    from experiments.allocation import Phase
    from experiments.modelref import ModelVersion
    from experiments.routing import Route

MAX_TEMPLATES = 4096  # routes x served versions held; forced units each have their own route


class Answer(Protocol):
    """What ``log`` reads of gateway/serving.py's Answer (the compiled encoder reads it as the
    tuple (route, model, items, source, bucket, phase)); not imported: serving imports this."""

    @property
    def route(self) -> Route: ...
    @property
    def model(self) -> ModelVersion: ...
    @property
    def items(self) -> Sequence[Mapping[str, object]]: ...
    @property
    def source(self) -> str: ...
    @property
    def bucket(self) -> int: ...
    @property
    def phase(self) -> Phase | None: ...


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
    counted: tuple[str, str]  # (experiment, variant): the key of ``ExposureEncoder.counts``


_dumps = orjson.dumps
_SOURCES = {s: _dumps(s) for s in ("cache", "local", "db", "fallback", "none", "unavailable")}
_ITEM_ID = itemgetter("id")


def _drop(record: EncodedExposure) -> bool:
    return False


NATIVE = _exposure is not None  # the compiled encoder is built


class ExposureEncoder:
    """Exposure records as JSON bytes, with each route's constant part encoded once.

    ``native``: use the compiled encoder when it is built (the default); False is the Python
    encoder, the reference the tests compare it with."""

    # exposure(route, model, phase, unit_id, items, source, request_id, bucket, attributes):
    # the exposure of ``route`` served from ``model`` to ``unit_id``, with a new event id and
    # the current time; ``items`` are the answer's (dicts with a str ``id``). The compiled
    # encoder's ``encode``, or ``python_exposure``.
    exposure: Callable[
        [
            Route,
            ModelVersion,
            Phase | None,
            str,
            Sequence[Mapping[str, object]],
            str,
            str,
            int,
            Mapping[str, object] | None,
        ],
        EncodedExposure,
    ]

    # log(answer, unit_id, request_id, attributes): the exposure of a gateway/serving.py
    # Answer, if its route is in an experiment, with the attributes its surface logs, to
    # ``admit``. The compiled encoder's ``log``, or ``python_log``.
    log: Callable[[Answer, str, str, Mapping[str, object] | None], None]

    def __init__(
        self,
        counts: dict[tuple[str, str], int] | None = None,
        admit: Callable[[EncodedExposure], object] | None = None,
        *,
        native: bool = True,
    ) -> None:
        # Exposures encoded, by (experiment, variant): Metrics.exposure_counts, which adds
        # them to ``abgate_exposures`` at each scrape and log flush.
        self.counts = {} if counts is None else counts
        self.admit = admit if admit is not None else _drop
        self._templates: dict[tuple[int, str, str, int], _Template] = {}
        self.new_id = IdGenerator()
        self.clock = UtcClock()
        self.native = False
        self.exposure = self.python_exposure
        self.log = self.python_log
        if native and _exposure is not None:
            self.native = True
            # Its own id prefix: its counter and new_id's must never make the same id. What it
            # cannot write (a lone surrogate, an item without a str "id") it hands to the
            # Python encoder, which raises as orjson does.
            encoder = _exposure.Encoder(
                EncodedExposure,
                os.urandom(10).hex(),
                self._parts,
                _dumps,
                self.python_exposure,
                self.python_log,
                self.admit,
                self.counts,
                MAX_TEMPLATES,
            )
            self.exposure, self.log = encoder.encode, encoder.log

    def python_log(
        self,
        answer: Answer,
        unit_id: str,
        request_id: str,
        attributes: Mapping[str, object] | None = None,
    ) -> None:
        """``log`` by the Python encoder."""
        route = answer.route
        if route.experiment is None or route.variant is None:
            return
        logged = route.surface.log_attributes
        self.admit(
            self.python_exposure(
                route,
                answer.model,
                answer.phase,
                unit_id,
                answer.items,
                answer.source,
                request_id,
                answer.bucket,
                {k: attributes[k] for k in logged if k in attributes}
                if logged and attributes
                else None,
            )
        )

    def python_exposure(
        self,
        route: Route,
        model: ModelVersion,
        phase: Phase | None,
        unit_id: str,
        items: Sequence[Mapping[str, object]],
        source: str,
        request_id: str,
        bucket: int,
        attributes: Mapping[str, object] | None,
    ) -> EncodedExposure:
        """``exposure`` by the Python encoder."""
        key = (id(route), model.name, model.version, id(phase))
        t = self._templates.get(key)
        if t is None or t.route is not route or t.phase is not phase:
            t = _Template(route, phase, *self._parts(route, model, phase)[:6])
            if len(self._templates) >= MAX_TEMPLATES:
                self._templates.clear()  # configurations replaced: their routes are gone
            self._templates[key] = t
        event_id, ts = self.new_id(), self.clock()
        ids = tuple(map(_ITEM_ID, items))
        record = EncodedExposure(
            event_id,
            ts,
            self._encode(t, event_id, ts, unit_id, ids, source, request_id, bucket, attributes),
        )
        counts, counted = self.counts, t.counted
        counts[counted] = counts.get(counted, 0) + 1
        return record

    @staticmethod
    def _encode(
        t: _Template,
        event_id: str,
        ts: str,
        unit_id: str,
        items: Sequence[str],
        source: str,
        request_id: str,
        bucket: int,
        attributes: Mapping[str, object] | None,
    ) -> bytes:
        """The payload from its template and the request's fields (the Python encoder).

        ``event_id`` and ``ts`` are the gateway's own (gateway/ids.py, gateway/clock.py: hex
        digits, a timestamp) and are written without JSON escaping."""
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

    @staticmethod
    def _parts(
        route: Route, model: ModelVersion, phase: Phase | None
    ) -> tuple[bytes, bytes, bytes, bytes, bytes, tuple[str, str], tuple[str, ...], bool]:
        """The payload's parts constant for a route, its served version and its phase; the key
        its exposures are counted under, the attributes its surface logs, and whether it is in
        an experiment (its answers are logged)."""
        phase_part = b',"forced":true' if route.forced else b""
        if phase is not None and phase.id:
            phase_part += (
                b',"phase":' + _dumps(phase.id) + b',"weights":' + _dumps(list(phase.weights))
            )
        return (
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
            (route.experiment or "", route.variant or ""),
            tuple(route.surface.log_attributes),
            route.experiment is not None and route.variant is not None,
        )
