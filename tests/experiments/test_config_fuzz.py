"""The config loader under arbitrary input: a located ConfigError, never another exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import ConfigError
from experiments.config import parse_experiment, parse_surfaces_file

EXPERIMENT = {
    "key": "home-exp",
    "surface": "home_top",
    "status": "running",
    "traffic": 0.5,
    "variants": [
        {"key": "control", "weight": 50, "model": "models:/home_recs@champion"},
        {"key": "treatment", "weight": 50, "model": "models:/home_recs/2"},
    ],
    "metrics": [{"name": "conversion", "kind": "proportion", "outcome": "purchase"}],
}
SURFACES = {
    "surfaces": [
        {"name": "home_top", "default_model": "models:/home_recs@champion", "max_limit": 50},
        {"name": "cart", "default_model": "models:/cart_recs/1", "log_attributes": ["country"]},
    ],
    "layers": [{"name": "home", "surface": "home_top"}],
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "\x00", "models:/x@y", "models:/x/1", "-1", "1e309", "_x"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, object]) -> str:
    """``base`` with a few fields, at any depth, replaced by arbitrary values, as YAML."""
    doc = yaml.safe_load(yaml.safe_dump(base))
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            k = draw(st.sampled_from(keys))
            child = node[k]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            node[k] = draw(values)
            break
    return yaml.safe_dump(doc, allow_unicode=draw(st.booleans()))


def only_config_errors(parse, text: str) -> None:
    try:
        parse(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | mutated(EXPERIMENT))
def test_any_experiment_text_validates_or_is_a_located_config_error(text: str) -> None:
    only_config_errors(parse_experiment, text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | mutated(SURFACES))
def test_any_surfaces_text_validates_or_is_a_located_config_error(text: str) -> None:
    only_config_errors(parse_surfaces_file, text)
