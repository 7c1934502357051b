"""The schema's new fields (layers, targeting, forced, winner, holdout) and cross-object checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import load_config_dir, parse_experiment, parse_surfaces_file
from experiments.errors import ConfigError
from tests.experiments.helpers import config, experiment

BASE = """key: exp
surface: home_top
variants:
  - {key: control, weight: 50, model: "models:/home_recs/1"}
  - {key: treatment, weight: 50, model: "models:/home_recs/7"}
"""


def _issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, "exp.yaml")
    return [str(i) for i in info.value.issues]


def test_defaults_keep_the_old_behaviour() -> None:
    e = parse_experiment(BASE)
    assert (e.layer, e.layer_range, e.targeting, e.forced, e.winner) == (
        None,
        (0.0, 1.0),
        None,
        {},
        None,
    )
    assert e.layer_id == "surface:home_top" and e.layer_slice == (0, 10_000)


def test_targeting_errors_name_line_field_and_column() -> None:
    assert _issues(BASE + "targeting: country = 'JP'\n") == [
        "exp.yaml:6: field 'targeting' column 9: unexpected character '='"
    ]


def test_forced_units_must_name_variants() -> None:
    (issue,) = _issues(BASE + "forced: {qa-1: nope}\n")
    assert "forced units name unknown variants: qa-1 -> nope" in issue


def test_winner_only_on_stopped_experiments() -> None:
    (issue,) = _issues(BASE + "winner: treatment\n")
    assert "only valid on a stopped experiment" in issue


def test_layer_range_must_be_a_slice() -> None:
    (issue,) = _issues(BASE + "layer_range: [0.6, 0.2]\n")
    assert issue.startswith("exp.yaml:6: field 'layer_range'")


def test_surfaces_file_declares_layers_and_holdout() -> None:
    f = parse_surfaces_file(
        "surfaces:\n  - {name: s, default_model: 'models:/m/1', holdout: 0.1}\nlayers:\n  - {name: recs}\n"
    )
    assert f.surfaces[0].holdout == 0.1 and f.layers[0].salt == "recs"
    with pytest.raises(ConfigError, match=r"field 'surfaces\[0\]\.holdout'"):
        parse_surfaces_file("surfaces:\n  - {name: s, default_model: 'models:/m/1', holdout: 2}\n")


def test_running_experiments_in_one_layer_must_not_overlap() -> None:
    a = experiment("a", status="running", layer="recs", layer_range=[0, 0.6])
    b = experiment("b", status="running", layer="recs", layer_range=[0.5, 1])
    with pytest.raises(ConfigError, match="overlaps running experiment 'a' in layer 'recs'"):
        config(a, b)


def test_two_running_experiments_without_layers_still_conflict() -> None:
    with pytest.raises(ConfigError, match="field 'layer_range' overlaps running experiment 'a'"):
        config(experiment("a", status="running"), experiment("b", status="running"))


def test_running_experiments_of_one_surface_share_a_layer() -> None:
    a = experiment("a", status="running", layer="recs", layer_range=[0, 0.5])
    b = experiment("b", status="running", layer_range=[0.5, 1])
    with pytest.raises(ConfigError, match="must share a layer"):
        config(a, b)


def test_unknown_layer_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown layer 'ui'"):
        config(experiment(layer="ui"))


def test_one_winner_per_surface() -> None:
    a = experiment("a", status="stopped", winner="control")
    b = experiment("b", status="stopped", winner="treatment")
    with pytest.raises(ConfigError, match="already serves the winner of 'a'"):
        config(a, b)


def test_folder_with_layers_loads(tmp_path: Path) -> None:
    (tmp_path / "surfaces.yaml").write_text(
        "surfaces:\n  - {name: home_top, default_model: 'models:/home_recs/1'}\nlayers:\n  - {name: recs}\n"
    )
    (tmp_path / "a.yaml").write_text(
        BASE.replace("key: exp", "key: a") + "status: running\nlayer: recs\nlayer_range: [0, 0.5]\n"
    )
    (tmp_path / "b.yaml").write_text(
        BASE.replace("key: exp", "key: b") + "status: running\nlayer: recs\nlayer_range: [0.5, 1]\n"
    )
    cs = load_config_dir(tmp_path)
    assert set(cs.layers) == {"recs"} and len(cs.running_on("home_top")) == 2
