"""The Postgres experiment store: versioned, auditable experiments, surfaces and layers.

Every change writes a new immutable row in ``config_versions`` (who, when, why, which action)
and moves the object's head; nothing is updated in place. ``apply`` is idempotent: a body equal
to the current one writes nothing. Writers serialise on a per-schema advisory lock, check the
whole configuration as it would be after the change (experiments/checks.py), bump the
configuration revision and ``NOTIFY abgate_config`` in the same transaction, so replicas reload
exactly when the change commits (experiments/store/config_source.py).

Lifecycle rules live in experiments/lifecycle.py, the error tree in experiments/errors.py.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from pydantic import BaseModel, ValidationError

from experiments.checks import check_references
from experiments.errors import (
    ConfigError,
    ConfigIssue,
    ExperimentNotFound,
    LifecycleError,
    MissingModelError,
    ReshuffleRefused,
    StoreUnavailable,
)
from experiments.lifecycle import ACTION_TO, next_status, reshuffling_changes, salt_change_note
from experiments.modelref import ModelRef
from experiments.schema import ConfigSet, Experiment, Layer, Status, Surface, SurfacesFile
from experiments.source import ConfigSnapshot
from experiments.store.referential import check_salt_unused, missing_models, missing_refs
from experiments.store.snapshots import HeadRow, build_config, read_heads, snapshot_from_heads
from experiments.store.versions import (
    VERSION_COLUMNS,
    ApplyResult,
    StoredExperiment,
    VersionRecord,
    record_from_row,
)

__all__ = ["NOTIFY_CHANNEL", "PostgresExperimentStore"]

NOTIFY_CHANNEL = "abgate_config"
_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':abgate-config'))"


class PostgresExperimentStore:
    """Experiments, surfaces and layers in Postgres, with their full history."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- reads ---------------------------------------------------------------------------------

    async def snapshot(self) -> ConfigSnapshot:
        """The live configuration, validated (what a replica would serve now)."""
        async with (
            self._conn() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            heads, revision = await read_heads(conn)
            schema = await conn.fetchval("SELECT current_schema()")
        return snapshot_from_heads(heads, revision, f"postgres:{schema}")

    async def get(self, key: str, version: int | None = None) -> StoredExperiment:
        """The current (or the given) version of an experiment; ExperimentNotFound otherwise."""
        async with self._conn() as conn:
            if version is None:
                row = await conn.fetchrow(
                    f"SELECT {VERSION_COLUMNS} FROM config_versions JOIN config_heads USING (kind, name, version)"
                    " WHERE kind = 'experiment' AND name = $1",
                    key,
                )
            else:
                row = await conn.fetchrow(
                    f"SELECT {VERSION_COLUMNS} FROM config_versions WHERE kind = 'experiment' AND name = $1 AND version = $2",
                    key,
                    version,
                )
        if row is None:
            what = f"experiment '{key}'" + (
                f" has no version {version}" if version is not None else " does not exist"
            )
            raise ExperimentNotFound(what)
        rec = record_from_row(row)
        return StoredExperiment(Experiment.model_validate(rec.body), rec)

    async def list_experiments(self, *, include_archived: bool = False) -> list[StoredExperiment]:
        """Current version of every experiment, by key."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {VERSION_COLUMNS} FROM config_versions JOIN config_heads USING (kind, name, version)"
                " WHERE kind = 'experiment' AND ($1 OR status <> 'archived') ORDER BY name",
                include_archived,
            )
        out = [record_from_row(r) for r in rows]
        return [StoredExperiment(Experiment.model_validate(r.body), r) for r in out]

    async def history(self, key: str, kind: str = "experiment") -> list[VersionRecord]:
        """Every version of an object, oldest first; ExperimentNotFound if there is none."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {VERSION_COLUMNS} FROM config_versions WHERE kind = $1 AND name = $2 ORDER BY version",
                kind,
                key,
            )
        if not rows:
            raise ExperimentNotFound(f"{kind} '{key}' does not exist")
        return [record_from_row(r) for r in rows]

    async def missing_models(self, experiment: Experiment) -> list[str]:
        """Why each variant's model cannot serve yet (empty when every one can)."""
        async with self._conn() as conn:
            return await missing_models(conn, experiment)

    # --- writes --------------------------------------------------------------------------------

    async def apply_surfaces(
        self,
        declared: SurfacesFile,
        *,
        author: str,
        reason: str | None = None,
        dry_run: bool = False,
    ) -> list[ApplyResult]:
        """Create or update surfaces and layers; unchanged ones get no new version."""
        results: list[ApplyResult] = []
        async with self._conn() as conn, conn.transaction():
            await conn.execute(_LOCK_SQL)
            heads = {(h.kind, h.name): h for h in (await read_heads(conn))[0]}
            objects = [("layer", x.name, x.model_dump(mode="json")) for x in declared.layers]
            objects += [("surface", s.name, s.model_dump(mode="json")) for s in declared.surfaces]
            for kind, name, body in objects:
                head = heads.get((kind, name))
                model = Surface if kind == "surface" else Layer
                if head is not None and _same_body(model, head.body, body):
                    results.append(
                        ApplyResult(kind, name, head.version, False, "unchanged", dry_run=dry_run)
                    )
                    continue
                version = await _next_version(conn, kind, name)
                action = "apply" if head else "create"
                warnings: tuple[str, ...] = ()
                if kind == "surface":
                    warnings = tuple(
                        await missing_refs(
                            conn, [("default_model", ModelRef.parse(body["default_model"]))]
                        )
                    )
                if not dry_run:
                    await _write(conn, kind, name, version, body, None, action, author, reason)
                results.append(
                    ApplyResult(kind, name, version, True, action, None, warnings, dry_run)
                )
            if not dry_run and any(r.changed for r in results):
                await _bump_and_notify(conn)
        return results

    async def apply(
        self,
        experiment: Experiment,
        *,
        author: str,
        reason: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        source: str | None = None,
    ) -> ApplyResult:
        """Create or update an experiment from a file (``source`` locates errors).

        The file's ``status``, when it sets one, is a lifecycle transition checked like the
        commands; otherwise the stored status is kept. Changes that reshuffle units of a
        started experiment need ``force`` and a ``reason``.
        """
        key = experiment.key
        where = source or f"experiment:{key}"
        async with self._conn() as conn, conn.transaction():
            await conn.execute(_LOCK_SQL)
            heads, _ = await read_heads(conn)
            head = next((h for h in heads if h.kind == "experiment" and h.name == key), None)
            if head is None:
                current: Status = "draft"
                old: Experiment | None = None
            else:
                old = Experiment.model_validate(head.body)
                current = old.status
                if current == "archived":
                    raise LifecycleError(
                        f"experiment '{key}' is archived and read-only; apply it under a new key"
                    )
            wants = experiment.status if "status" in experiment.model_fields_set else current
            winner = (
                experiment.winner
                if "winner" in experiment.model_fields_set
                else (old.winner if old else None)
            )
            new = _revalidate(experiment, wants, winner if wants == "stopped" else None, where)
            action = "create" if old is None else "apply"
            if wants != current:
                step = ACTION_TO.get((current, wants))
                if step is None:
                    raise LifecycleError(
                        f"experiment '{key}' is {current}: a file cannot move it to {wants}"
                    )
                action = step
            if head is not None and _same_body(Experiment, head.body, new.model_dump(mode="json")):
                return ApplyResult(
                    "experiment", key, head.version, False, "unchanged", current, (), dry_run
                )
            if old is not None and old.status in ("running", "paused"):
                changes = reshuffling_changes(old, new)
                if changes and not (force and reason):
                    hint = "add --reason" if force else "use --force with --reason"
                    raise ReshuffleRefused(
                        f"experiment '{key}' is {old.status}; refusing: "
                        + "; ".join(changes)
                        + f" ({hint})"
                    )
            warnings = await self._check_change(conn, heads, new, old, where)
            version = await _next_version(conn, "experiment", key)
            if not dry_run:
                await _write(
                    conn,
                    "experiment",
                    key,
                    version,
                    new.model_dump(mode="json"),
                    new.status,
                    action,
                    author,
                    reason,
                )
                await _bump_and_notify(conn)
        return ApplyResult(
            "experiment", key, version, True, action, new.status, tuple(warnings), dry_run
        )

    async def start(self, key: str, *, author: str, reason: str | None = None) -> ApplyResult:
        """draft or stopped (with a new salt) → running."""
        return await self.transition(key, "start", author=author, reason=reason)

    async def pause(self, key: str, *, author: str, reason: str | None = None) -> ApplyResult:
        """running → paused: the surface serves its default, no exposures."""
        return await self.transition(key, "pause", author=author, reason=reason)

    async def resume(self, key: str, *, author: str, reason: str | None = None) -> ApplyResult:
        """paused → running, same salt and buckets: units get their variant back."""
        return await self.transition(key, "resume", author=author, reason=reason)

    async def stop(
        self, key: str, *, author: str, winner: str | None = None, reason: str | None = None
    ) -> ApplyResult:
        """running/paused → stopped; with ``winner``, the surface serves its model to everyone."""
        return await self.transition(key, "stop", author=author, reason=reason, winner=winner)

    async def archive(self, key: str, *, author: str, reason: str | None = None) -> ApplyResult:
        """draft/stopped → archived: gone from snapshots (and a winner stops serving), kept in history."""
        return await self.transition(key, "archive", author=author, reason=reason)

    async def transition(
        self,
        key: str,
        action: str,
        *,
        author: str,
        reason: str | None = None,
        winner: str | None = None,
    ) -> ApplyResult:
        """Apply one lifecycle ``action`` to the current version, as a new version."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute(_LOCK_SQL)
            heads, _ = await read_heads(conn)
            head = next((h for h in heads if h.kind == "experiment" and h.name == key), None)
            if head is None:
                raise ExperimentNotFound(f"experiment '{key}' does not exist")
            old = Experiment.model_validate(head.body)
            status = next_status(key, old.status, action)
            if winner is not None and action != "stop":
                raise LifecycleError("--winner only goes with stop")
            new = _revalidate(
                old, status, winner if status == "stopped" else None, f"experiment:{key}"
            )
            warnings = await self._check_change(conn, heads, new, old, f"experiment:{key}")
            version = await _next_version(conn, "experiment", key)
            await _write(
                conn,
                "experiment",
                key,
                version,
                new.model_dump(mode="json"),
                status,
                action,
                author,
                reason,
            )
            await _bump_and_notify(conn)
        return ApplyResult("experiment", key, version, True, action, status, tuple(warnings))

    # --- internals -----------------------------------------------------------------------------

    async def _check_change(
        self,
        conn: asyncpg.Connection,
        heads: list[HeadRow],
        new: Experiment,
        old: Experiment | None,
        where: str,
    ) -> list[str]:
        """Check ``new`` against everything else; return warnings, raise what forbids it."""
        others = [h for h in heads if not (h.kind == "experiment" and h.name == new.key)]
        config, _ = build_config(others)
        # The changed experiment goes last, so conflicts are reported on it (checks.py).
        experiments = {**config.experiments, new.key: new}
        sources = {**config.sources, new.key: where}
        issues = [
            i
            for i in check_references(
                ConfigSet(config.surfaces, experiments, sources, config.layers)
            )
            if i.file == where
        ]
        if issues:
            raise ConfigError(issues)
        starting = new.status == "running" and (old is None or old.status in ("draft", "stopped"))
        # A forced salt change deals every unit again, as a start does: a salt that already
        # ran would give units their old variants back (and, back to its own earlier salt, the
        # report could not tell the runs apart: docs/analysts.md, "Salt changes").
        resalted = old is not None and old.status in ("running", "paused") and old.salt != new.salt
        if starting or resalted:
            await check_salt_unused(conn, new)
        notes = [salt_change_note(old, new)] if resalted and old is not None else []
        missing = await missing_models(conn, new)
        if new.status == "stopped" and new.winner is not None:
            missing = await missing_refs(
                conn, [(f"winner '{new.winner}'", new.variant(new.winner).model_ref)]
            )
            if missing:
                raise MissingModelError(new.key, missing)
            return []
        if missing and new.status == "running":
            raise MissingModelError(new.key, missing)
        return notes + missing

    def _conn(self) -> Any:
        return _Acquire(self.pool)


class _Acquire:
    """``pool.acquire()`` that turns connection failures into StoreUnavailable."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._cm = pool.acquire()

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            return await self._cm.__aenter__()
        except (
            OSError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            TimeoutError,
        ) as exc:
            raise StoreUnavailable(f"cannot reach the experiment store: {exc}") from exc

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)


def _revalidate(e: Experiment, status: Status, winner: str | None, where: str) -> Experiment:
    body = {**e.model_dump(mode="json"), "status": status, "winner": winner}
    try:
        return Experiment.model_validate(body)
    except ValidationError as exc:
        raise ConfigError(
            [ConfigIssue(where, ".".join(map(str, err["loc"])), err["msg"]) for err in exc.errors()]
        ) from None


async def _write(
    conn: asyncpg.Connection,
    kind: str,
    name: str,
    version: int,
    body: dict[str, Any],
    status: str | None,
    action: str,
    author: str,
    reason: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO config_versions (kind, name, version, body, status, action, author, reason, revision)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, (SELECT revision + 1 FROM config_state))",
        kind,
        name,
        version,
        json.dumps(body),
        status,
        action,
        author,
        reason,
    )
    await conn.execute(
        "INSERT INTO config_heads (kind, name, version) VALUES ($1, $2, $3)"
        " ON CONFLICT (kind, name) DO UPDATE SET version = EXCLUDED.version",
        kind,
        name,
        version,
    )


async def _next_version(conn: asyncpg.Connection, kind: str, name: str) -> int:
    # The highest version ever written, not the head's: a head moved back by hand keeps history.
    n = await conn.fetchval(
        "SELECT coalesce(max(version), 0) + 1 FROM config_versions WHERE kind = $1 AND name = $2",
        kind,
        name,
    )
    return int(n)


async def _bump_and_notify(conn: asyncpg.Connection) -> None:
    # NOTIFY is transactional: listeners hear it when (and only if) the change commits.
    await conn.execute("UPDATE config_state SET revision = revision + 1")
    await conn.execute("SELECT pg_notify($1, current_schema())", NOTIFY_CHANNEL)


def _same_body(model: type[BaseModel], stored: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a stored body equals ``new`` once both are in the current schema's form.

    A body stored before a field was added lacks it; read back through the model it gains the
    default, so re-applying an unchanged file after an upgrade writes no new version.
    """
    if stored == new:
        return True
    try:
        return model.model_validate(stored).model_dump(mode="json") == new
    except ValidationError:
        return False
