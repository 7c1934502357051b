"""The request path's exposure encoder: the bytes of the contract's record, for every shape.

Every test runs on both encoders: the compiled one (gateway/_exposure.c) and the Python one
(the reference, used when no C compiler was there at install).
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
from collections.abc import Mapping, Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import Exposure, ModelRef
from experiments.allocation import Phase
from experiments.modelref import ModelVersion
from experiments.routing import Route
from experiments.schema import Surface
from gateway.exposure_json import MAX_TEMPLATES, NATIVE, EncodedExposure, ExposureEncoder
from gateway.serving import Answer
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


ENCODERS = [
    pytest.param(
        True,
        id="compiled",
        marks=pytest.mark.skipif(not NATIVE, reason="not built (no C compiler)"),
    ),
    pytest.param(False, id="python"),
]


def record(
    encoded: EncodedExposure,
    r: Route,
    model: ModelVersion,
    phase: Phase | None,
    unit: str,
    items: Sequence[str],
    source: str,
    bucket: int,
    attributes: Mapping[str, object] | None,
    request_id: str = "r\\1",
) -> Exposure:
    """The record the request path used to build for the same answer (and the same id and time)."""
    assert r.experiment is not None and r.variant is not None
    return Exposure(
        encoded.event_id, encoded.ts, r.experiment, r.variant, unit, r.surface.name, model.name,
        model.version, tuple(items), r.config_version, source, request_id, r.forced,
        phase.id if phase else "", phase.weights if phase else (), bucket, r.holdout,
        dict(attributes) if attributes else None,
    )  # fmt: skip


def answer_items(ids: Sequence[str]) -> list[dict[str, object]]:
    return [{"id": i, "score": 1.0} for i in ids]


def test_the_compiled_encoder_is_built_wherever_a_c_compiler_is() -> None:
    # The extension is optional at install (no compiler: the Python encoder); on a machine with
    # one, a build that broke silently would cost every exposure ~35,000 instructions.
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here")
    assert NATIVE, "gateway/_exposure.c did not build: run `pip install -e .` and read its errors"
    assert ExposureEncoder().native


@pytest.mark.parametrize("native", ENCODERS)
def test_every_shape_of_exposure_is_encoded_as_the_record_would_be(native: bool) -> None:
    enc = ExposureEncoder(native=native)
    assert enc.native is native
    entry = LogEntryEncoder(project="p", log_id="abgate-events")
    stdout = StdoutSink(log_id="abgate-events")
    model = ModelVersion("m", '1"x')
    shapes = itertools.product(
        (False, True),  # forced
        (None, Phase("", ()), Phase("ph1", WEIGHTS), Phase("ph2", OTHER_WEIGHTS)),
        (-1, 0, 9999),  # bucket
        (False, True),  # holdout
        (None, {}, {"country": "fr", "n": 3, "odd": '\u00e9"\n\u2028'}),  # attributes
        ("u1", 'we"ird\\\u2028'),  # unit id
        ("cache", "fallback"),  # source
    )
    n = 0
    for forced, phase, bucket, holdout, attributes, unit, source in shapes:
        r = route(forced=forced, holdout=holdout)
        items = ("sku-1", 'sku-"2"')
        encoded = enc.exposure(
            r, model, phase, unit, answer_items(items), source, "r\\1", bucket, attributes
        )
        expected = record(encoded, r, model, phase, unit, items, source, bucket, attributes)
        assert type(encoded) is EncodedExposure
        assert encoded.payload == orjson.dumps(expected.as_payload()), expected
        assert entry.encode(encoded) == entry.encode(expected)
        assert stdout.encode(encoded) == stdout.encode(expected)
        n += 1
    assert n == 576


@pytest.mark.parametrize("native", ENCODERS)
def test_ids_are_unique_and_times_are_now(native: bool) -> None:
    enc = ExposureEncoder(native=native)
    r, model = route(), ModelVersion("m", "1")
    before = time.time_ns() // 1000
    records = [enc.exposure(r, model, None, "u", [], "cache", "r", -1, None) for _ in range(300)]
    after = time.time_ns() // 1000
    assert len({x.event_id for x in records}) == 300
    assert all(re.fullmatch(r"[0-9a-f]{32}", x.event_id) for x in records)
    for x in records:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", x.ts)
        seconds = time.mktime(time.strptime(x.ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        us = int(seconds) * 1_000_000 + int(x.ts[20:26])
        assert before <= us <= after
    assert [x.ts for x in records] == sorted(x.ts for x in records)


@pytest.mark.skipif(not NATIVE, reason="the compiled encoder is not built")
@settings(max_examples=300, deadline=None)
@given(
    unit=st.text(),
    ids=st.lists(st.text(), max_size=12),
    request_id=st.text(max_size=40),
    source=st.text(max_size=12),
    attributes=st.none() | st.dictionaries(st.text(max_size=8), st.text() | st.integers()),
)
def test_the_compiled_encoder_writes_any_string_as_orjson_does(
    unit: str,
    ids: list[str],
    request_id: str,
    source: str,
    attributes: dict[str, object] | None,
) -> None:
    # Any text: control characters, quotes, backslashes, non-ASCII, lone surrogates (which
    # orjson refuses: the compiled encoder hands them to the Python one, which raises the same).
    model, phase = ModelVersion("m", "1"), Phase("ph1", WEIGHTS)
    r = route()
    outcomes = []
    for native in (True, False):
        enc = ExposureEncoder(native=native)
        try:
            encoded = enc.exposure(
                r, model, phase, unit, answer_items(ids), source, request_id, 17, attributes
            )
        except TypeError as exc:
            outcomes.append(("raised", str(exc)))
            continue
        expected = record(encoded, r, model, phase, unit, ids, source, 17, attributes, request_id)
        assert encoded.payload == orjson.dumps(expected.as_payload())
        outcomes.append(("ok", ""))
        assert enc.counts == {("exp", "control"): 1}
    assert outcomes[0] == outcomes[1]


@pytest.mark.skipif(not NATIVE, reason="the compiled encoder is not built")
def test_every_character_needing_an_escape_is_escaped_at_every_position() -> None:
    # The compiled encoder copies 8 plain bytes at a time: a character needing an escape must
    # be found in every lane of such a word, and at the ends of the string.
    enc = ExposureEncoder()
    r, model = route(), ModelVersion("m", "1")
    specials = [chr(c) for c in range(0x20)] + ['"', "\\", "\x7f", "\u00e9", "\u2028", " ", "!"]
    for special in specials:
        for at in range(19):
            text = "abcdefghijklmnopqr"[:at] + special + "abcdefghijklmnopqr"[at:]
            encoded = enc.exposure(
                r, model, None, text, answer_items([text]), "cache", text, 1, None
            )
            payload = orjson.loads(encoded.payload)
            assert (payload["unit_id"], payload["items"], payload["request_id"]) == (
                text,
                [text],
                text,
            )
            assert orjson.dumps(text) in encoded.payload


@pytest.mark.parametrize("native", ENCODERS)
def test_items_the_compiled_encoder_cannot_write_are_written_by_the_python_one(
    native: bool,
) -> None:
    # Not a dict, an id that is not a str: the Python encoder's bytes (orjson's), never a crash.
    enc = ExposureEncoder(native=native)
    r, model = route(), ModelVersion("m", "1")
    for items, ids in (
        ([{"id": 7}], [7]),
        (({"id": "a"}, {"id": "b"}), ["a", "b"]),
        ([{"id": "a", "other": 1}], ["a"]),
    ):
        encoded = enc.exposure(r, model, None, "u", items, "cache", "r", 2**70, None)
        assert orjson.loads(encoded.payload)["items"] == ids
        assert orjson.loads(encoded.payload)["bucket"] == 2**70
    with pytest.raises(KeyError):
        enc.exposure(r, model, None, "u", [{"no_id": 1}], "cache", "r", 1, None)


@pytest.mark.parametrize("native", ENCODERS)
def test_exposures_are_counted_by_experiment_and_variant(native: bool) -> None:
    counts: dict[tuple[str, str], int] = {}
    enc = ExposureEncoder(counts, native=native)
    model = ModelVersion("m", "1")
    for n in range(5):
        enc.exposure(route(experiment=f"e{n % 2}"), model, None, "u", [], "cache", "r", 1, None)
    enc.exposure(route(holdout=True), model, None, "u", [], "cache", "r", 1, None)
    assert counts == {("e0", "control"): 3, ("e1", "control"): 2, ("exp", "__holdout__"): 1}


@pytest.mark.parametrize("native", ENCODERS)
def test_a_route_served_again_gets_the_fields_of_its_own_request(native: bool) -> None:
    enc = ExposureEncoder(native=native)
    r, phase = route(), Phase("ph1", WEIGHTS)
    for n, model in enumerate([ModelVersion("m", "1"), ModelVersion("m", "2")] * 3):
        items = tuple(f"sku-{n}-{i}" for i in range(n))
        encoded = enc.exposure(
            r, model, phase, f"u{n}", answer_items(items), "cache", "r\\1", n, None
        )
        expected = record(encoded, r, model, phase, f"u{n}", items, "cache", n, None)
        assert encoded.payload == orjson.dumps(expected.as_payload())


@pytest.mark.parametrize("native", ENCODERS)
def test_a_new_configuration_with_other_weights_is_encoded_with_them(native: bool) -> None:
    # Phases and routes are rebuilt on each configuration change; a template of an earlier
    # one (even at a reused id()) must never be served for them.
    enc = ExposureEncoder(native=native)
    model = ModelVersion("m", "1")
    for hi in range(MAX_TEMPLATES + 300):
        r = route(experiment=f"exp{hi % 7}")
        phase = Phase(f"ph{hi}", ({"variant": "control", "weight": 1, "lo": 0, "hi": hi},))
        payload = orjson.loads(
            enc.exposure(r, model, phase, "u", [], "cache", "r", 1, None).payload
        )
        assert payload["weights"][0]["hi"] == hi
        assert payload["phase"] == f"ph{hi}"
        assert payload["experiment"] == f"exp{hi % 7}"


@pytest.mark.parametrize("native", ENCODERS)
def test_log_admits_the_exposure_of_an_experiment_answer_with_the_logged_attributes(
    native: bool,
) -> None:
    admitted: list[EncodedExposure] = []
    enc = ExposureEncoder(admit=admitted.append, native=native)
    surface = Surface(name="home", default_model="models:/m/1", log_attributes=["country", "app"])
    inside = Route(
        surface, ModelRef.parse("models:/m/1"), experiment="exp", variant="t", config_version=3
    )
    outside = Route(surface, ModelRef.parse("models:/m/1"))
    model, phase = ModelVersion("m", "1"), Phase("ph1", WEIGHTS)
    items = answer_items(["a", "b"])
    attributes = {"country": "fr", "tier": "gold", "app": 2}
    enc.log(Answer(outside, model, items, "cache", -1, None), "u1", "r1", attributes)
    assert admitted == []  # no experiment: nothing logged
    enc.log(Answer(inside, model, items, "cache", 42, phase), "u1", "r1", attributes)
    enc.log(Answer(inside, model, items, "db", 42, phase), "u2", "r2", {"tier": "gold"})
    enc.log(Answer(inside, model, items, "db", 42, phase), "u3", "r3", None)
    assert [orjson.loads(x.payload).get("attributes") for x in admitted] == [
        {"country": "fr", "app": 2},  # the surface's attributes only, in its order
        None,
        None,
    ]
    first = orjson.loads(admitted[0].payload)
    assert (first["experiment"], first["variant"], first["unit_id"]) == ("exp", "t", "u1")
    assert (first["bucket"], first["phase"], first["items"]) == (42, "ph1", ["a", "b"])
    assert enc.counts == {("exp", "t"): 3}
