"""Pinned arms in Postgres: first writer wins, idempotent, audited re-pins."""

from __future__ import annotations

import asyncio

import asyncpg

from experiments import AliasArm, ModelRef
from experiments.store import pin_arms, pin_history, read_pins, repin

ARM = AliasArm("exp", "control", ModelRef.parse("models:/home_recs@champion"))


async def test_concurrent_first_pins_agree_on_one_version_and_are_recorded_once(
    pool: asyncpg.Pool,
) -> None:
    # Two replicas see the experiment start while the alias moves between their reads.
    first, second = await asyncio.gather(
        pin_arms(pool, [ARM], {("home_recs", "champion"): "1"}),
        pin_arms(pool, [ARM], {("home_recs", "champion"): "2"}),
    )
    assert first[("exp", "control")].version == second[("exp", "control")].version
    history = await pin_history(pool, "exp")
    assert [(h.action, h.version) for h in history] == [("pin", first[("exp", "control")].version)]


async def test_an_alias_move_does_not_move_a_pin(pool: asyncpg.Pool) -> None:
    await pin_arms(pool, [ARM], {("home_recs", "champion"): "1"})
    pins = await pin_arms(pool, [ARM], {("home_recs", "champion"): "2"})
    assert pins[("exp", "control")].version == "1"
    assert len(await pin_history(pool, "exp")) == 1


async def test_an_unknown_alias_leaves_the_arm_unpinned_until_it_exists(pool: asyncpg.Pool) -> None:
    assert await pin_arms(pool, [ARM], {}) == {}
    pins = await pin_arms(pool, [ARM], {("home_recs", "champion"): "3"})
    assert pins[("exp", "control")].version == "3"


async def test_a_changed_model_reference_re_pins_and_says_why(pool: asyncpg.Pool) -> None:
    await pin_arms(pool, [ARM], {("home_recs", "champion"): "1"})
    moved = AliasArm("exp", "control", ModelRef.parse("models:/home_recs@challenger"))
    pins = await pin_arms(pool, [moved], {("home_recs", "challenger"): "5"})
    assert (pins[("exp", "control")].alias, pins[("exp", "control")].version) == ("challenger", "5")
    last = (await pin_history(pool, "exp"))[-1]
    assert (last.action, last.previous) == ("repin", "1")
    assert last.reason == "variant model changed from models:/home_recs@champion"


async def test_repin_moves_to_the_current_alias_version_with_who_and_why(
    pool: asyncpg.Pool,
) -> None:
    await pin_arms(pool, [ARM], {("home_recs", "champion"): "1"})
    async with pool.acquire() as conn:
        changes = await repin(
            conn, "exp", [ARM], {("home_recs", "champion"): "2"}, by="ana", reason="v1 retired"
        )
        again = await repin(
            conn, "exp", [ARM], {("home_recs", "champion"): "2"}, by="ana", reason="twice"
        )
    assert [(c.version, c.previous, c.changed_by, c.reason) for c in changes] == [
        ("2", "1", "ana", "v1 retired")
    ]
    assert again == []  # already there: nothing recorded
    assert (await read_pins(pool, ["exp"]))[("exp", "control")].version == "2"
