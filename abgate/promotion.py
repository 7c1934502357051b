"""Promotion with evidence: run the experiment's report, check its verdict, then promote.

This is composition (analysis reads the logs, registry moves the alias and writes the tags;
neither imports the other), so it lives in the ``abgate`` package. A promotion is refused,
with the reason, unless the variant that serves the version has the verdict ``ship``: it beats
control on the primary metric at alpha, no SRM check rejects, no guardrail is breached
(analysis/verdict.py). ``--force`` with a reason overrides a refusal about the evidence and is
recorded with it; it never overrides a missing experiment, variant or report.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from analysis import AnalysisError, BigQuerySource, CohortSource, Report, build_report
from experiments import Experiment, ModelVersion, load_config_dir
from experiments.settings import Settings
from experiments.store import Pin, PostgresExperimentStore, pins_of_model, read_aliases
from registry import Evidence

_BLOCK = 1 << 20


class PromotionRefused(Exception):
    """The evidence does not support the promotion; ``overridable`` by ``--force --reason``."""

    def __init__(self, message: str, *, overridable: bool) -> None:
        super().__init__(message)
        self.overridable = overridable


@dataclass(frozen=True, slots=True)
class FoundExperiment:
    """An experiment as configured, with the configuration version its exposures carry."""

    experiment: Experiment
    config_version: int
    origin: str  # "files in DIR" or "experiment store"


async def find_experiment(settings: Settings, pool: asyncpg.Pool, key: str) -> FoundExperiment:
    """The experiment ``key``, from ABGATE_EXPERIMENTS_DIR when set, else the Postgres store
    (the same places the gateway reads). Files have configuration version 1, as served."""
    if settings.experiments_dir is not None:
        cfg = load_config_dir(settings.experiments_dir)
        if key not in cfg.experiments:
            known = ", ".join(sorted(cfg.experiments)) or "none"
            raise PromotionRefused(
                f"no experiment '{key}' in {settings.experiments_dir} (known: {known})",
                overridable=False,
            )
        return FoundExperiment(cfg.experiments[key], 1, f"files in {settings.experiments_dir}")
    stored = await PostgresExperimentStore(pool).get(key)
    return FoundExperiment(stored.experiment, stored.version, "experiment store")


@dataclass(frozen=True, slots=True)
class ArchiveDigest:
    """What ``digest`` covers: every ``*.json`` file the report reads, by relative path, size
    and content (``sha256-tree:`` + sha256 over one ``PATH\\0SIZE\\0SHA256\\n`` line a file,
    in path order; each file hashed up to the size it had when it was opened)."""

    digest: str
    files: int
    bytes: int
    stats: dict[str, tuple[int, int]]  # path -> (size, mtime_ns) when hashed

    def changed_since(self, root: Path) -> list[str]:
        """Files added, removed, grown or rewritten since the digest (a live archive grows)."""
        now = _stats(root)
        return sorted(p for p in now.keys() | self.stats.keys() if now.get(p) != self.stats.get(p))


def _stats(root: Path) -> dict[str, tuple[int, int]]:
    from analysis.archive import archive_files

    out = {}
    for f in archive_files(root):
        st = f.stat()
        out[f.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def archive_digest(root: Path) -> ArchiveDigest:
    """The content digest of an archive (see ``ArchiveDigest``), read in 1 MiB blocks."""
    from analysis.archive import archive_files

    tree = hashlib.sha256()
    stats: dict[str, tuple[int, int]] = {}
    total = 0
    for f in archive_files(root):
        rel = f.relative_to(root).as_posix()
        with f.open("rb") as fh:
            st = os.fstat(fh.fileno())
            left = st.st_size
            h = hashlib.sha256()
            while left > 0:
                block = fh.read(min(_BLOCK, left))
                if not block:
                    break
                h.update(block)
                left -= len(block)
        stats[rel] = (st.st_size, st.st_mtime_ns)
        total += st.st_size
        tree.update(f"{rel}\0{st.st_size}\0{h.hexdigest()}\n".encode())
    return ArchiveDigest("sha256-tree:" + tree.hexdigest(), len(stats), total, stats)


def serving_variant(
    experiment: Experiment,
    mv: ModelVersion,
    variant: str | None,
    pins: Mapping[str, str],
    aliases: Mapping[str, str],
) -> str:
    """The non-control variant that serves ``mv``: ``variant`` if given (checked), else the
    only one whose model is ``mv`` (directly, through its pin, or through its alias now)."""
    control = str(experiment.control)
    served: dict[str, str | None] = {}
    for v in experiment.variants:
        ref = v.model_ref
        if ref.name != mv.name:
            served[v.key] = None
            continue
        served[v.key] = ref.version or pins.get(v.key) or aliases.get(str(ref.alias))
    arms = ", ".join(f"{v.key} -> {v.model}" for v in experiment.variants)
    if variant is not None:
        if variant not in served:
            raise PromotionRefused(
                f"experiment '{experiment.key}' has no variant '{variant}' (variants: {arms})",
                overridable=False,
            )
        if variant == control:
            raise PromotionRefused(
                f"'{variant}' is the control of '{experiment.key}': it is the baseline, "
                "an experiment cannot show that it beats itself",
                overridable=False,
            )
        if served[variant] != mv.version:
            raise PromotionRefused(
                f"variant '{variant}' of '{experiment.key}' serves "
                f"{experiment.variant(variant).model}"
                + (f" (= version {served[variant]})" if served[variant] else "")
                + f", not {mv}: its result is not evidence for {mv}",
                overridable=True,
            )
        return variant
    found = [k for k, version in served.items() if version == mv.version and k != control]
    if len(found) == 1:
        return found[0]
    if not found and served.get(control) == mv.version:
        raise PromotionRefused(
            f"only the control '{control}' of '{experiment.key}' serves {mv}: the experiment "
            "measures the other variants against it, not it",
            overridable=False,
        )
    if not found:
        raise PromotionRefused(
            f"no variant of '{experiment.key}' serves {mv} (variants: {arms}); "
            "name it with --variant",
            overridable=False,
        )
    raise PromotionRefused(
        f"variants {', '.join(found)} of '{experiment.key}' all serve {mv}: name one with --variant",
        overridable=False,
    )


@dataclass(frozen=True, slots=True)
class ReportInput:
    """Where the report reads the logs: a local archive or a BigQuery sink table."""

    archive: Path
    bigquery: str | None = None
    bigquery_endpoint: str | None = None


def run_report(
    experiment: Experiment,
    source: ReportInput,
    *,
    alpha: float,
    since: datetime | None,
    until: datetime | None,
    config_version: int | None = None,
) -> Report:
    """The experiment's report (with its verdict), as ``abgate report`` builds it."""
    try:
        data: CohortSource | Path = source.archive
        if source.bigquery is not None:
            data = BigQuerySource.connect(source.bigquery, endpoint=source.bigquery_endpoint)
        return build_report(
            experiment, data, alpha=alpha, since=since, until=until, config_version=config_version
        )
    except AnalysisError as exc:
        raise PromotionRefused(f"cannot build the report: {exc}", overridable=False) from None


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z") if ts else None


def _num(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of checking the evidence: the Evidence to record, and the refusal if any."""

    evidence: Evidence
    refusal: str | None


def judge(
    found: FoundExperiment,
    report: Report,
    variant: str,
    *,
    alias: str,
    source: ReportInput,
    digest: ArchiveDigest | None,
    promoted_by: str,
    force_reason: str | None,
) -> Decision:
    """Check the verdict of ``variant`` and build the evidence of the promotion.

    The refusal (``None`` when the variant ships) names the verdict's reason; ``force_reason``
    marks the evidence as a forced promotion.
    """
    experiment = found.experiment
    verdict = report.verdict
    if verdict is None or variant not in verdict.variants:
        raise PromotionRefused(
            f"the report of '{experiment.key}' has no verdict for variant '{variant}'",
            overridable=False,
        )
    vv = verdict.variants[variant]
    refusal = None if vv.decision == "ship" else f"verdict {vv.decision}: {vv.reason}"
    pc = vv.primary_comparison
    days = [d.day for d in report.daily]
    body = json.dumps(experiment.model_dump(mode="json"), sort_keys=True).encode()
    now = _iso(datetime.now(UTC)) or ""
    evidence = Evidence(
        alias=alias,
        experiment=experiment.key,
        variant=variant,
        control=str(experiment.control),
        decision=vv.decision,
        decision_reason=vv.reason,
        metric=vv.primary,
        lift=_num(pc.lift) if pc else None,
        lift_ci=(_num(pc.lift_ci[0]), _num(pc.lift_ci[1])) if pc else (None, None),
        p_value=_num(pc.p_value) if pc else None,
        p_value_adjusted=_num(pc.p_value_adjusted) if pc else None,
        alpha=report.alpha,
        units={k: v.units for k, v in report.variants.items()},
        window_since=_iso(report.since),
        window_until=_iso(report.until),
        first_exposure_day=days[0].isoformat() if days else None,
        last_exposure_day=days[-1].isoformat() if days else None,
        source="bigquery" if source.bigquery else "archive",
        config_version=found.config_version,
        config_sha256="sha256:" + hashlib.sha256(body).hexdigest(),
        report_at=_iso(report.generated_at) or now,
        promoted_by=promoted_by,
        promoted_at=now,
        guardrails=dict(vv.guardrails),
        archive=str(source.archive) if not source.bigquery else None,
        archive_digest=digest.digest if digest else None,
        archive_files=digest.files if digest else None,
        archive_bytes=digest.bytes if digest else None,
        bigquery_table=source.bigquery,
        forced=refusal is not None and force_reason is not None,
        force_reason=force_reason if refusal is not None else None,
    )
    return Decision(evidence, refusal)


@dataclass(frozen=True, slots=True)
class AliasUser:
    """A running experiment's variant that names the alias being moved."""

    experiment: str
    variant: str
    origin: str
    pinned: str | None  # the pinned version; None when not pinned (yet)
    pinned_at: datetime | None


async def running_experiments(
    settings: Settings, pool: asyncpg.Pool
) -> list[tuple[str, Experiment]]:
    """``(origin, experiment)`` of every running experiment, store and YAML folder."""
    snapshot = await PostgresExperimentStore(pool).snapshot()
    out = [("experiment store", e) for e in snapshot.config.experiments.values()]
    d = settings.experiments_dir
    if d is not None and d.is_dir():
        out += [(f"files in {d}", e) for e in load_config_dir(d).experiments.values()]
    return [(o, e) for o, e in out if e.status == "running"]


async def alias_users(
    settings: Settings, pool: asyncpg.Pool, model: str, alias: str
) -> tuple[list[AliasUser], bool]:
    """Running variants that use ``models:/model@alias``, with their pins, and whether this
    database has pins at all (``experiment_pins``)."""
    pins = await pins_of_model(pool, model)
    by_arm = {(p.experiment, p.variant): p for p in pins or []}
    users = []
    for origin, e in await running_experiments(settings, pool):
        for v in e.variants:
            ref = v.model_ref
            if ref.name == model and ref.alias == alias:
                pin = by_arm.get((e.key, v.key))
                version, at = (pin.version, pin.pinned_at) if pin else (None, None)
                users.append(AliasUser(e.key, v.key, origin, version, at))
    return users, pins is not None


def describe_users(
    users: Sequence[AliasUser], has_pins: bool, model: str, alias: str, version: str
) -> list[tuple[str, str]]:
    """``(level, line)`` for each running experiment using the alias: what happens to its arm."""
    out = []
    for u in users:
        arm = f"running experiment '{u.experiment}' variant '{u.variant}' ({u.origin}) uses models:/{model}@{alias}"
        if not has_pins:
            out.append(
                ("warning", f"{arm}: this database has no experiment_pins table, so the arm "
                 f"follows the alias and now serves version {version}")
            )  # fmt: skip
        elif u.pinned is not None:
            when = f", pinned {u.pinned_at:%Y-%m-%d %H:%M UTC}" if u.pinned_at else ""
            out.append(
                ("note", f"{arm}: it stays pinned to version {u.pinned}{when} (re-pin with "
                 f"`abgate experiments repin {u.experiment} --variant {u.variant} --reason ...`)")
            )  # fmt: skip
        else:
            out.append(
                ("warning", f"{arm}: not pinned yet; a gateway pins it when it first serves the "
                 f"experiment, to the alias's version then (now {version})")
            )  # fmt: skip
    return out


async def pinned_versions(pool: asyncpg.Pool, experiment: Experiment, model: str) -> dict[str, str]:
    """variant -> pinned version of ``experiment``'s arms of ``model`` (empty without pins)."""
    pins: list[Pin] = await pins_of_model(pool, model) or []
    return {p.variant: p.version for p in pins if p.experiment == experiment.key}


async def current_aliases(pool: asyncpg.Pool, model: str) -> dict[str, str]:
    """alias -> version of ``model`` in abgate (what the gateway serves through them now)."""
    return {alias: v for (_, alias), v in (await read_aliases(pool, model)).items()}
