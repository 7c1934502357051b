"""Small builders shared by the experiments tests."""

from __future__ import annotations

from typing import Any

import yaml

from experiments.checks import check_references
from experiments.config import ConfigSet, Experiment, Layer, Surface
from experiments.errors import ConfigError
from experiments.source import ConfigSnapshot

SURFACES = """
surfaces:
  - {name: home_top, default_model: "models:/home_recs/1"}
  - {name: cart, default_model: "models:/cart_recs/1", holdout: 0.0}
layers:
  - {name: recs, holdout: 0.0}
"""


def experiment(key: str = "exp", **fields: Any) -> Experiment:
    """A valid two-variant experiment on home_top, with ``fields`` overriding."""
    body: dict[str, Any] = {
        "key": key,
        "surface": "home_top",
        "variants": [
            {"key": "control", "weight": 50, "model": "models:/home_recs/1"},
            {"key": "treatment", "weight": 50, "model": "models:/home_recs/7"},
        ],
    }
    body.update(fields)
    return Experiment.model_validate(body)


def config(*experiments: Experiment, surfaces: str = SURFACES) -> ConfigSet:
    """A checked ConfigSet of the surfaces above and ``experiments``."""
    doc = yaml.safe_load(surfaces)
    cs = ConfigSet(
        {s["name"]: Surface.model_validate(s) for s in doc.get("surfaces", [])},
        {e.key: e for e in experiments},
        {},
        {x["name"]: Layer.model_validate(x) for x in doc.get("layers", [])},
    )
    issues = check_references(cs)
    if issues:
        raise ConfigError(issues)
    return cs


def snapshot(*experiments: Experiment, versions: dict[str, int] | None = None) -> ConfigSnapshot:
    """A snapshot of ``config(*experiments)``."""
    return ConfigSnapshot(config(*experiments), versions or {})
