"""The request path's exposure encoder: the bytes of the contract's record, for every shape."""

from __future__ import annotations

import itertools

import orjson

from experiments import Exposure, ModelRef
from experiments.allocation import Phase
from experiments.modelref import ModelVersion
from experiments.routing import Route
from experiments.schema import Surface
from gateway.exposure_json import MAX_TEMPLATES, EncodedExposure, ExposureEncoder
from gateway.sinks import LogEntryEncoder
from gateway.stdout_sink import StdoutSink

WEIGHTS = (
    {"variant": "control", "weight": 50, "lo": 0, "hi": 5000},
    {"variant": "treatment", "weight": 50, "lo": 5000, "hi": 10000},
)
OTHER_WEIGHTS = ({"variant": "a", "weight": 1, "lo": 0, "hi": 10000},)
TS = "2026-01-02T03:00:00.000001Z"


def route(*, forced: bool = False, holdout: bool = False, experiment: str = "exp") -> Route:
    surface = Surface(name="home", default_model="models:/m/1")
    return Route(
        surface,
        ModelRef.parse("models:/m/1"),
        experiment=experiment,
        variant="__holdout__" if holdout else "control",
        config_version=7,
        forced=forced,
        holdout=holdout,
    )


def record(
    r: Route,
    model: ModelVersion,
    phase: Phase | None,
    unit: str,
    items: tuple[str, ...],
    source: str,
    bucket: int,
    attributes: dict[str, object] | None,
    n: int = 1,
) -> Exposure:
    """The record the request path used to build for the same answer."""
    assert r.experiment is not None and r.variant is not None
    return Exposure(
        f"e{n}", TS, r.experiment, r.variant, unit, r.surface.name, model.name, model.version,
        items, r.config_version, source, "r\\1", r.forced, phase.id if phase else "",
        phase.weights if phase else (), bucket, r.holdout, attributes,
    )  # fmt: skip


def test_every_shape_of_exposure_is_encoded_as_the_record_would_be() -> None:
    enc = ExposureEncoder()
    entry = LogEntryEncoder(project="p", log_id="abgate-events")
    stdout = StdoutSink(log_id="abgate-events")
    model = ModelVersion("m", '1"x')
    shapes = itertools.product(
        (False, True),  # forced
        (None, Phase("", ()), Phase("ph1", WEIGHTS), Phase("ph2", OTHER_WEIGHTS)),
        (-1, 0, 9999),  # bucket
        (False, True),  # holdout
        (None, {"country": "fr", "n": 3, "odd": '\u00e9"\n\u2028'}),  # attributes
        ("u1", 'we"ird\\\u2028'),  # unit id
        ("cache", "fallback"),  # source
    )
    n = 0
    for forced, phase, bucket, holdout, attributes, unit, source in shapes:
        r = route(forced=forced, holdout=holdout)
        items = ("sku-1", 'sku-"2"')
        payload = enc.payload(
            f"e{n}", TS, r, model, phase, unit, items, source, "r\\1", bucket, attributes
        )
        expected = record(r, model, phase, unit, items, source, bucket, attributes, n)
        assert payload == orjson.dumps(expected.as_payload()), expected
        encoded = EncodedExposure(f"e{n}", TS, payload)
        assert entry.encode(encoded) == entry.encode(expected)
        assert stdout.encode(encoded) == stdout.encode(expected)
        n += 1
    assert n == 384


def test_a_route_served_again_gets_the_fields_of_its_own_request() -> None:
    enc = ExposureEncoder()
    r, phase = route(), Phase("ph1", WEIGHTS)
    for n, model in enumerate([ModelVersion("m", "1"), ModelVersion("m", "2")] * 3):
        items = tuple(f"sku-{n}-{i}" for i in range(n))
        payload = enc.payload(
            f"e{n}", TS, r, model, phase, f"u{n}", items, "cache", "r\\1", n, None
        )
        expected = record(r, model, phase, f"u{n}", items, "cache", n, None, n)
        assert payload == orjson.dumps(expected.as_payload())


def test_a_new_configuration_with_other_weights_is_encoded_with_them() -> None:
    # Phases and routes are rebuilt on each configuration change; a template of an earlier
    # one (even at a reused id()) must never be served for them.
    enc = ExposureEncoder()
    model = ModelVersion("m", "1")
    for hi in range(MAX_TEMPLATES + 300):
        r = route(experiment=f"exp{hi % 7}")
        phase = Phase(f"ph{hi}", ({"variant": "control", "weight": 1, "lo": 0, "hi": hi},))
        payload = orjson.loads(
            enc.payload("e", TS, r, model, phase, "u", (), "cache", "r", 1, None)
        )
        assert payload["weights"][0]["hi"] == hi
        assert payload["phase"] == f"ph{hi}"
        assert payload["experiment"] == f"exp{hi % 7}"
