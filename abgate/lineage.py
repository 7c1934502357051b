"""``abgate registry lineage``: where a model version came from and what it was used for.

The chain, gathered from MLflow and Postgres: the training run and its datasets -> the MLflow
version -> each load of its results (input, results digest, the inference run and its dataset)
-> the experiments whose variants served it (naming the version, or an alias pinned to it),
with their configuration versions -> the alias moves and promotion evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from experiments import Experiment, ModelVersion, load_config_dir
from experiments.settings import Settings
from experiments.store import PostgresExperimentStore, pins_of_model
from registry import (
    AliasMove,
    MlflowRegistry,
    RegisteredVersion,
    RegistryUnavailable,
    RunInfo,
    promotions_of,
)


@dataclass(frozen=True, slots=True)
class Load:
    """One load of the version's results (``result_loads``)."""

    load_id: int
    state: str
    loaded_at: datetime
    activated_at: datetime | None
    units: int
    metadata: dict[str, Any]


@dataclass(slots=True)
class ServedBy:
    """A variant that served the version, and the configuration versions in which it did."""

    experiment: str
    variant: str
    origin: str
    status: str
    model: str
    how: str
    config_versions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Lineage:
    """Everything ``registry lineage`` prints about one model version."""

    model: str
    version: str
    registered: RegisteredVersion | None = None
    problems: list[str] = field(default_factory=list)
    training_run: RunInfo | None = None
    status: str | None = None
    activated_at: datetime | None = None
    loads: list[Load] = field(default_factory=list)
    inference_runs: dict[str, RunInfo] = field(default_factory=dict)
    served_by: list[ServedBy] = field(default_factory=list)
    promotions: list[AliasMove] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``--format json``); times as ISO 8601."""
        return orjson.loads(orjson.dumps(asdict(self), default=_jsonable))  # type: ignore[no-any-return]


def _jsonable(x: object) -> object:
    if isinstance(x, tuple | set | frozenset):
        return list(x)
    if hasattr(x, "items"):
        return dict(x)  # type: ignore[call-overload]
    raise TypeError(type(x).__name__)


async def _loads(pool: asyncpg.Pool, mv: ModelVersion) -> list[Load]:
    rows = await pool.fetch(
        "SELECT load_id, state, loaded_at, activated_at, unit_count, metadata::text AS md"
        " FROM result_loads WHERE model = $1 AND version = $2 ORDER BY load_id",
        mv.name,
        mv.version,
    )
    return [
        Load(
            r["load_id"],
            r["state"],
            r["loaded_at"],
            r["activated_at"],
            r["unit_count"],
            orjson.loads(r["md"]),
        )
        for r in rows
    ]


def _serves(
    experiment: Experiment, variant: str, mv: ModelVersion, pinned: dict[tuple[str, str], str]
) -> str | None:
    ref = experiment.variant(variant).model_ref
    if ref.name != mv.name:
        return None
    if ref.version == mv.version:
        return f"names {mv}"
    if ref.alias is not None and pinned.get((experiment.key, variant)) == mv.version:
        return f"{ref} pinned to version {mv.version}"
    return None


async def _served_by(pool: asyncpg.Pool, settings: Settings, mv: ModelVersion) -> list[ServedBy]:
    pinned = {
        (p.experiment, p.variant): p.version for p in await pins_of_model(pool, mv.name) or []
    }
    out: dict[tuple[str, str, str], ServedBy] = {}
    store = PostgresExperimentStore(pool)
    for stored in await store.list_experiments(include_archived=True):
        for rec in await store.history(stored.experiment.key):
            e = Experiment.model_validate(rec.body)
            for v in e.variant_keys:
                how = _serves(e, v, mv, pinned)
                if how is None:
                    continue
                s = out.setdefault(
                    (e.key, v, "experiment store"),
                    ServedBy(e.key, v, "experiment store", "", e.variant(v).model, how),
                )
                s.status = stored.experiment.status
                s.config_versions.append(
                    {"version": rec.version, "action": rec.action, "at": rec.created_at,
                     "by": rec.author, "weights": dict(zip(e.variant_keys, e.weights, strict=True))}
                )  # fmt: skip
    d = settings.experiments_dir
    if d is not None and d.is_dir():
        for e in load_config_dir(d).experiments.values():
            for v in e.variant_keys:
                how = _serves(e, v, mv, pinned)
                if how is not None:
                    origin = f"files in {d}"
                    out[(e.key, v, origin)] = ServedBy(
                        e.key, v, origin, e.status, e.variant(v).model, how
                    )
    return list(out.values())


async def gather(
    pool: asyncpg.Pool, registry: MlflowRegistry, settings: Settings, mv: ModelVersion
) -> Lineage:
    """The lineage of ``mv``; what MLflow cannot say is listed in ``problems``, not raised."""
    from experiments import ModelRef

    lin = Lineage(mv.name, mv.version)
    try:
        lin.registered = await registry.resolve(ModelRef(mv.name, mv.version))
        if lin.registered.run_id:
            lin.training_run = await registry.run(lin.registered.run_id)
    except RegistryUnavailable as exc:
        lin.problems.append(str(exc))
    row = await pool.fetchrow(
        "SELECT status, activated_at FROM model_versions WHERE model = $1 AND version = $2",
        mv.name,
        mv.version,
    )
    if row is not None:
        lin.status, lin.activated_at = row["status"], row["activated_at"]
    lin.loads = await _loads(pool, mv)
    for load in lin.loads:
        run_id = load.metadata.get("predict_run_id")
        if isinstance(run_id, str) and run_id not in lin.inference_runs:
            try:
                lin.inference_runs[run_id] = await registry.run(run_id)
            except RegistryUnavailable as exc:
                lin.problems.append(str(exc))
    lin.served_by = await _served_by(pool, settings, mv)
    lin.promotions = await promotions_of(pool, mv.name, mv.version)
    return lin


def _when(ts: datetime | int | None) -> str:
    if ts is None:
        return "?"
    if isinstance(ts, int):  # MLflow keeps milliseconds since the epoch
        from datetime import UTC

        ts = datetime.fromtimestamp(ts / 1000, UTC)
    return f"{ts:%Y-%m-%d %H:%M:%S} UTC"


def _run_node(parent: Any, label: str, run: RunInfo) -> None:
    node = parent.add(
        f"[bold]{label}[/] {run.run_id} [dim]{run.name or ''}[/] ({run.status}, "
        f"started {_when(run.start_time)}, MLflow experiment {run.experiment_id})"
    )
    for ds in run.datasets:
        node.add(
            f"dataset [bold]{ds.name}[/] ({ds.context or 'input'}): digest {ds.digest}, "
            f"{ds.source_type} source {ds.source}"
            + "".join(f", {k} {v}" for k, v in ds.tags.items())
        )
    if not run.datasets:
        node.add("[dim]no dataset logged with mlflow.data[/]")


def _pct(x: object) -> str:
    return f"{x:+.2%}" if isinstance(x, int | float) else "n/a"


def render(lin: Lineage) -> Any:
    """The lineage as a Rich tree, from the data to the promotions."""
    from rich.markup import escape
    from rich.tree import Tree

    tree = Tree(f"[bold]models:/{lin.model}/{lin.version}[/]")
    for p in lin.problems:
        tree.add(f"[yellow]warning[/] {escape(p)}")
    if lin.training_run is not None:
        _run_node(tree, "training run", lin.training_run)
    if lin.registered is not None:
        rv = lin.registered
        tree.add(
            f"[bold]MLflow version[/] {rv.version.version}: source {rv.source}, aliases "
            f"{', '.join(rv.aliases) or '-'}"
        )
    res = tree.add(
        f"[bold]results in abgate[/]: {lin.status or 'never loaded'}"
        + (f" since {_when(lin.activated_at)}" if lin.activated_at else "")
    )
    for load in lin.loads:
        md = load.metadata
        node = res.add(
            f"load {load.load_id} ({load.state}) at {_when(load.loaded_at)}: {load.units:,} units "
            f"from {md.get('source')} (input {md.get('input_hash')}), results "
            f"{md.get('results_sha256')}" + (f", top_k {md['top_k']}" if "top_k" in md else "")
        )
        run = lin.inference_runs.get(str(md.get("predict_run_id")))
        if run is not None:
            _run_node(node, "inference run", run)
    exps = tree.add("[bold]experiments that served it[/]")
    for s in lin.served_by:
        node = exps.add(
            f"{s.experiment} / {s.variant} ({s.status}, {s.origin}): {s.model}, {s.how}"
        )
        for c in s.config_versions:
            weights = ", ".join(f"{k} {w:g}" for k, w in c["weights"].items())
            node.add(
                f"config version {c['version']} ({c['action']} by {c['by']} at "
                f"{_when(c['at'])}): weights {weights}"
            )
    if not lin.served_by:
        exps.add("[dim]none[/]")
    promos = tree.add("[bold]alias moves and promotions[/]")
    for m in lin.promotions:
        ev = m.evidence
        line = f"{_when(m.changed_at)} @{m.alias} {m.previous or '-'} -> {m.version} ({m.action})"
        if ev:
            lift, lo, hi = (_pct(x) for x in (ev.get("lift"), *(ev.get("lift_ci") or [None] * 2)))
            padj = ev.get("p_value_adjusted")
            line += (
                f" by {ev.get('promoted_by')}: experiment {ev.get('experiment')} variant "
                f"{ev.get('variant')}, {ev.get('metric')} lift {lift} [{lo}, {hi}], "
                f"p (Holm) {'n/a' if padj is None else f'{padj:.3g}'}, verdict {ev.get('decision')}, "
                f"{ev.get('archive_digest') or ev.get('bigquery_table')}"
            )
            if ev.get("forced"):
                line += f" [yellow]FORCED[/]: {escape(str(ev.get('force_reason')))}"
        else:
            line += " [dim]no evidence recorded[/]"
        promos.add(line)
    if not lin.promotions:
        promos.add("[dim]none[/]")
    return tree
