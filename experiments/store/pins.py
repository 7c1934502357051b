"""Pinned arms: the model version each alias arm of a running experiment serves (Postgres).

A variant whose model is ``models:/NAME@ALIAS`` is pinned to the version the alias names when
the experiment is first seen running, and serves that version for the experiment's life:
promoting the alias moves surfaces' ``default_model`` and non-experiment traffic, never a
running experiment's arms (docs/experiments.md, "Pinned arms"). Pins live in
``experiment_pins`` (migration 0011), every change in ``experiment_pin_history``.

``pin_arms`` is idempotent and safe under concurrency (``INSERT ... ON CONFLICT DO NOTHING``):
every replica and the CLI may call it, and the first writer's version wins. An arm whose model
reference changed in the configuration (another model or alias) is re-pinned, and that is
recorded. ``repin`` is the explicit, audited move to the alias's current version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from experiments.arms import AliasArm, alias_arms
from experiments.schema import Experiment
from experiments.store.aliases import read_aliases
from experiments.store.pool import Executor


@dataclass(frozen=True, slots=True)
class Pin:
    """The version an alias arm is pinned to."""

    experiment: str
    variant: str
    model: str
    alias: str
    version: str
    pinned_at: datetime
    pinned_by: str


@dataclass(frozen=True, slots=True)
class PinChange:
    """One recorded pin, re-pin or unpin."""

    experiment: str
    variant: str
    model: str
    alias: str
    version: str
    previous: str | None
    action: str
    reason: str | None
    changed_by: str
    changed_at: datetime


_PIN_SQL = """
WITH wanted AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        AS w(experiment, variant, model, alias, version)
),
current AS (
    SELECT w.*, p.model AS old_model, p.alias AS old_alias, p.version AS old_version
    FROM wanted w LEFT JOIN experiment_pins p USING (experiment, variant)
),
written AS (
    INSERT INTO experiment_pins AS p (experiment, variant, model, alias, version, pinned_by)
    SELECT experiment, variant, model, alias, version, $6 FROM current
    WHERE old_model IS NULL OR old_model <> model OR old_alias <> alias
    ON CONFLICT (experiment, variant) DO UPDATE
        SET model = EXCLUDED.model, alias = EXCLUDED.alias, version = EXCLUDED.version,
            pinned_at = now(), pinned_by = EXCLUDED.pinned_by
        WHERE p.model <> EXCLUDED.model OR p.alias <> EXCLUDED.alias
    RETURNING p.experiment, p.variant, p.model, p.alias, p.version
)
INSERT INTO experiment_pin_history
    (experiment, variant, model, alias, version, previous, action, reason, changed_by)
SELECT w.experiment, w.variant, w.model, w.alias, w.version, c.old_version,
       CASE WHEN c.old_model IS NULL THEN 'pin' ELSE 'repin' END,
       CASE WHEN c.old_model IS NULL THEN 'experiment running'
            ELSE 'variant model changed from models:/' || c.old_model || '@' || c.old_alias END,
       $6
FROM written w JOIN current c USING (experiment, variant)
"""


async def pin_arms(
    conn: Executor,
    arms: Iterable[AliasArm],
    aliases: Mapping[tuple[str, str], str],
    *,
    by: str = "gateway",
    timeout: float | None = None,
) -> dict[tuple[str, str], Pin]:
    """Pin every arm not pinned yet to its alias's current version; return the arms' pins.

    Arms whose alias points nowhere yet are left unpinned (and absent from the result): they
    get pinned once the alias exists.
    """
    arms = list(arms)
    todo = [
        (a, aliases[(a.ref.name, a.ref.alias or "")])
        for a in arms
        if (a.ref.name, a.ref.alias or "") in aliases
    ]
    if todo:
        await conn.execute(
            _PIN_SQL,
            [a.experiment for a, _ in todo],
            [a.variant for a, _ in todo],
            [a.ref.name for a, _ in todo],
            [a.ref.alias or "" for a, _ in todo],
            [v for _, v in todo],
            by,
            timeout=timeout,
        )
    pins = await read_pins(conn, {a.experiment for a in arms}, timeout=timeout)
    wanted = {(a.experiment, a.variant): a.ref for a in arms}
    return {
        k: p
        for k, p in pins.items()
        if k in wanted and (p.model, p.alias) == (wanted[k].name, wanted[k].alias)
    }


async def read_pins(
    conn: Executor, experiments: Iterable[str] | None = None, *, timeout: float | None = None
) -> dict[tuple[str, str], Pin]:
    """``(experiment, variant) -> Pin`` of the given experiments (all when None)."""
    keys = None if experiments is None else sorted(experiments)
    rows = await conn.fetch(
        "SELECT experiment, variant, model, alias, version, pinned_at, pinned_by"
        " FROM experiment_pins WHERE $1::text[] IS NULL OR experiment = ANY($1::text[])",
        keys,
        timeout=timeout,
    )
    return {(r["experiment"], r["variant"]): Pin(**dict(r)) for r in rows}


async def repin(
    conn: asyncpg.Connection,
    experiment: str,
    arms: Iterable[AliasArm],
    aliases: Mapping[tuple[str, str], str],
    *,
    by: str,
    reason: str,
) -> list[PinChange]:
    """Move ``arms`` of ``experiment`` to their aliases' current versions, recorded with ``reason``.

    Returns the changes made (arms already on the alias's version are left alone).
    """
    changes: list[PinChange] = []
    async with conn.transaction():
        current = await read_pins(conn, [experiment])
        for arm in arms:
            version = aliases.get((arm.ref.name, arm.ref.alias or ""))
            if version is None:
                continue
            old = current.get((experiment, arm.variant))
            if old is not None and old.version == version and old.model == arm.ref.name:
                continue
            await conn.execute(
                """INSERT INTO experiment_pins (experiment, variant, model, alias, version, pinned_by)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (experiment, variant) DO UPDATE
                   SET model = EXCLUDED.model, alias = EXCLUDED.alias, version = EXCLUDED.version,
                       pinned_at = now(), pinned_by = EXCLUDED.pinned_by""",
                experiment,
                arm.variant,
                arm.ref.name,
                arm.ref.alias or "",
                version,
                by,
            )
            row = await conn.fetchrow(
                """INSERT INTO experiment_pin_history
                   (experiment, variant, model, alias, version, previous, action, reason, changed_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   RETURNING experiment, variant, model, alias, version, previous, action, reason,
                             changed_by, changed_at""",
                experiment,
                arm.variant,
                arm.ref.name,
                arm.ref.alias or "",
                version,
                old.version if old else None,
                "repin" if old else "pin",
                reason,
                by,
            )
            changes.append(PinChange(**dict(row)))
    return changes


async def pin_history(conn: Executor, experiment: str) -> list[PinChange]:
    """Every pin, re-pin and unpin of ``experiment``, oldest first."""
    rows = await conn.fetch(
        """SELECT experiment, variant, model, alias, version, previous, action, reason,
                  changed_by, changed_at
           FROM experiment_pin_history WHERE experiment = $1 ORDER BY id""",
        experiment,
    )
    return [PinChange(**dict(r)) for r in rows]


async def pin_experiment(
    conn: Executor, experiment: Experiment, *, by: str
) -> dict[tuple[str, str], Pin]:
    """Pin ``experiment``'s alias arms not pinned yet (what a gateway does at first sight)."""
    arms = alias_arms(experiment)
    if not arms:
        return {}
    return await pin_arms(conn, arms, await read_aliases(conn), by=by)


async def pins_of_model(conn: Executor, model: str) -> list[Pin]:
    """Every pin of ``model``'s versions, by experiment and variant."""
    rows = await conn.fetch(
        "SELECT experiment, variant, model, alias, version, pinned_at, pinned_by"
        " FROM experiment_pins WHERE model = $1 ORDER BY experiment, variant",
        model,
    )
    return [Pin(**dict(r)) for r in rows]
