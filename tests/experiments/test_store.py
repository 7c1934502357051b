"""The Postgres experiment store: versions, idempotent apply, lifecycle, referential checks."""

from __future__ import annotations

import asyncpg
import pytest

from experiments.config import parse_experiment, parse_surfaces_file
from experiments.errors import (
    ConfigError,
    ExperimentNotFound,
    LifecycleError,
    MissingModelError,
    ReshuffleRefused,
)
from experiments.modelref import ModelRef
from experiments.routing import Router
from experiments.store import PostgresExperimentStore
from tests.experiments.conftest import load_model
from tests.experiments.helpers import SURFACES, experiment

FILE = """key: exp
surface: home_top
variants:
  - {key: control, weight: 50, model: "models:/home_recs/1"}
  - {key: treatment, weight: 50, model: "models:/home_recs/7"}
"""


async def test_apply_is_idempotent_and_versions_every_change(
    store: PostgresExperimentStore,
) -> None:
    first = await store.apply(parse_experiment(FILE), author="ana", reason="new test")
    again = await store.apply(parse_experiment(FILE), author="ana")
    ramp = await store.apply(
        parse_experiment(
            FILE.replace(
                'weight: 50, model: "models:/home_recs/1', 'weight: 90, model: "models:/home_recs/1'
            )
        ),
        author="bo",
        reason="ramp",
    )
    assert (first.version, first.action, first.status) == (1, "create", "draft")
    assert (again.changed, again.action, again.version) == (False, "unchanged", 1)
    assert (ramp.version, ramp.action) == (2, "apply")
    history = await store.history("exp")
    assert [(h.version, h.author, h.reason, h.action) for h in history] == [
        (1, "ana", "new test", "create"),
        (2, "bo", "ramp", "apply"),
    ]
    assert (
        history[0].body["variants"][0]["weight"] == 50
        and history[0].created_at < history[1].created_at
    )


async def test_lifecycle_walk_creates_a_version_per_step(store: PostgresExperimentStore) -> None:
    await store.apply(experiment(), author="a")
    for step in ("start", "pause", "resume"):
        await getattr(store, step)("exp", author="a")
    stopped = await store.stop("exp", author="a", winner="treatment", reason="treatment won")
    assert (stopped.version, stopped.status) == (5, "stopped")
    snap = await store.snapshot()
    r = Router(snap).route("home_top", "u1")
    assert (r.experiment, r.model) == (None, ModelRef("home_recs", "7"))
    await store.archive("exp", author="a")
    assert "exp" not in (await store.snapshot()).config.experiments
    assert [h.status for h in await store.history("exp")] == [
        "draft",
        "running",
        "paused",
        "running",
        "stopped",
        "archived",
    ]
    with pytest.raises(LifecycleError, match="archived and read-only"):
        await store.apply(experiment(), author="a")


async def test_invalid_transitions_are_refused(store: PostgresExperimentStore) -> None:
    await store.apply(experiment(), author="a")
    with pytest.raises(LifecycleError, match="is draft: cannot pause"):
        await store.pause("exp", author="a")
    with pytest.raises(ExperimentNotFound, match="'nope' does not exist"):
        await store.start("nope", author="a")


async def test_stopped_experiment_cannot_restart_under_the_same_salt(
    store: PostgresExperimentStore,
) -> None:
    await store.apply(experiment(), author="a")
    await store.start("exp", author="a")
    await store.stop("exp", author="a")
    with pytest.raises(LifecycleError, match="salt 'exp' already ran"):
        await store.start("exp", author="a")
    await store.apply(experiment(salt="exp-run-2"), author="a", reason="rerun")
    assert (await store.start("exp", author="a")).status == "running"


async def test_another_experiment_cannot_reuse_a_salt_that_ran(
    store: PostgresExperimentStore,
) -> None:
    await store.apply(experiment("a"), author="a")
    await store.start("a", author="a")
    await store.stop("a", author="a")
    await store.apply(experiment("b", salt="a"), author="a")
    with pytest.raises(LifecycleError, match=r"already ran in experiment\(s\) a"):
        await store.start("b", author="a")


async def test_reshuffling_a_running_experiment_needs_force_and_reason(
    store: PostgresExperimentStore,
) -> None:
    await store.apply(experiment(), author="a")
    await store.start("exp", author="a")
    with pytest.raises(ReshuffleRefused, match="salt changes"):
        await store.apply(experiment(salt="other"), author="a")
    with pytest.raises(ReshuffleRefused, match="add --reason"):
        await store.apply(experiment(salt="other"), author="a", force=True)
    forced = await store.apply(
        experiment(salt="other"), author="a", force=True, reason="bug in salt"
    )
    assert forced.changed and (await store.get("exp")).experiment.salt == "other"
    (note,) = forced.warnings  # what the change means for the report
    assert note.startswith("salt changed from 'exp' to 'other': every unit is dealt again")
    assert "leaves the phases of 'exp' out" in note and "Salt changes" in note


async def test_a_forced_salt_change_cannot_go_back_to_a_salt_that_ran(
    store: PostgresExperimentStore,
) -> None:
    await store.apply(experiment(), author="a")
    await store.start("exp", author="a")
    await store.apply(experiment(salt="exp-2"), author="a", force=True, reason="re-deal")
    await store.pause("exp", author="a")
    with pytest.raises(LifecycleError, match="salt 'exp' already ran in experiment"):
        await store.apply(experiment(salt="exp"), author="a", force=True, reason="undo")
    assert (await store.get("exp")).experiment.salt == "exp-2"
    moved = await store.apply(experiment(salt="exp-3"), author="a", force=True, reason="again")
    assert moved.status == "paused" and (await store.get("exp")).experiment.salt == "exp-3"


async def test_start_refuses_models_without_results(
    store: PostgresExperimentStore, pool: asyncpg.Pool
) -> None:
    e = experiment(
        variants=[
            {"key": "control", "weight": 1, "model": "models:/home_recs/1"},
            {"key": "t", "weight": 1, "model": "models:/home_recs/9"},
            {"key": "u", "weight": 1, "model": "models:/home_recs@challenger"},
        ]
    )
    draft = await store.apply(e, author="a")
    assert any("models:/home_recs/9 has no loaded results" in w for w in draft.warnings)
    with pytest.raises(MissingModelError) as info:
        await store.start("exp", author="a")
    assert "variant 't': models:/home_recs/9 has no loaded results" in str(info.value)
    assert "alias 'challenger' is not set" in str(info.value)
    await load_model(pool, "home_recs", "9", default=False)
    await pool.execute(
        "INSERT INTO model_aliases (model, alias, version) VALUES ('home_recs', 'challenger', '7')"
    )
    with pytest.raises(MissingModelError, match="models:/home_recs/9 has no default list"):
        await store.start("exp", author="a")
    await load_model(pool, "home_recs", "9")
    assert (await store.start("exp", author="a")).status == "running"


async def test_apply_checks_against_the_rest_of_the_store(store: PostgresExperimentStore) -> None:
    await store.apply(experiment("a", status="running"), author="a")
    with pytest.raises(ConfigError) as info:
        await store.apply(experiment("b", status="running"), author="a", source="b.yaml")
    assert str(info.value).startswith("b.yaml: field 'layer_range' overlaps running experiment 'a'")
    with pytest.raises(ConfigError, match="unknown surface 'nowhere'"):
        await store.apply(experiment("c", surface="nowhere"), author="a", source="c.yaml")


async def test_layers_let_two_experiments_run_on_one_surface(
    store: PostgresExperimentStore,
) -> None:
    await store.apply(experiment("a", layer="recs", layer_range=[0, 0.5]), author="a")
    await store.apply(
        experiment("b", layer="recs", layer_range=[0.5, 1], status="running"), author="a"
    )
    await store.start("a", author="a")
    snap = await store.snapshot()
    assert snap.versions == {"a": 2, "b": 1}
    assert Router(snap).running() == {"home_top": ["a", "b"], "cart": []}


async def test_file_status_is_a_checked_transition(store: PostgresExperimentStore) -> None:
    created = await store.apply(experiment(status="running"), author="a")
    assert (created.action, created.status) == ("start", "running")
    kept = await store.apply(parse_experiment(FILE), author="a")
    assert kept.action == "unchanged" and kept.status == "running"
    with pytest.raises(LifecycleError, match="cannot move it to draft"):
        await store.apply(experiment(status="draft"), author="a")


async def test_dry_run_writes_nothing(store: PostgresExperimentStore) -> None:
    result = await store.apply(experiment(), author="a", dry_run=True)
    assert result.dry_run and result.version == 1
    with pytest.raises(ExperimentNotFound):
        await store.get("exp")


async def test_versions_are_immutable(store: PostgresExperimentStore, pool: asyncpg.Pool) -> None:
    await store.apply(experiment(), author="a")
    with pytest.raises(asyncpg.RaiseError, match="immutable"):
        await pool.execute("UPDATE config_versions SET author = 'mallory'")
    with pytest.raises(asyncpg.RaiseError, match="immutable"):
        await pool.execute("DELETE FROM config_versions")


async def test_show_any_version_and_surfaces_are_versioned(store: PostgresExperimentStore) -> None:
    await store.apply(experiment(), author="a")
    await store.apply(experiment(traffic=0.5), author="a")
    assert (await store.get("exp", 1)).experiment.traffic == 1.0
    assert (await store.get("exp")).version == 2
    with pytest.raises(ExperimentNotFound, match="has no version 9"):
        await store.get("exp", 9)
    changed = await store.apply_surfaces(
        parse_surfaces_file(SURFACES.replace("holdout: 0.0}", "holdout: 0.1}", 1)), author="a"
    )
    assert [(r.kind, r.name, r.version, r.changed) for r in changed] == [
        ("layer", "recs", 1, False),
        ("surface", "home_top", 1, False),
        ("surface", "cart", 2, True),
    ]
    assert len(await store.history("cart", kind="surface")) == 2


def test_a_body_stored_before_new_fields_existed_equals_its_reapplied_file() -> None:
    from experiments.config import Experiment, Surface
    from experiments.store.experiment_store import _same_body
    from tests.experiments.helpers import experiment

    new = experiment(metrics=[{"name": "c", "kind": "proportion", "outcome": "buy"}])
    body = new.model_dump(mode="json")
    old = {**body, "metrics": [{"name": "c", "kind": "proportion", "outcome": "buy"}]}
    assert old != body  # the stored body lacks role, direction, margin, cap
    assert _same_body(Experiment, old, body)
    assert not _same_body(Experiment, {**old, "traffic": 0.5}, body)
    surface = Surface(name="s", default_model="models:/m/1")
    stored = {k: v for k, v in surface.model_dump(mode="json").items() if k != "log_attributes"}
    assert _same_body(Surface, stored, surface.model_dump(mode="json"))
