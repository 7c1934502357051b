"""``abgate experiments ...``: validate files, and manage experiments in the Postgres store.

Exit codes: 0 done, 1 invalid file or refused change (the message says why and where),
3 the store cannot be reached. Postgres comes from ``ABGATE_POSTGRES_DSN`` and
``ABGATE_POSTGRES_SCHEMA`` (experiments.settings.Settings).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from abgate.commands import runtime
from experiments import (
    ConfigError,
    StoreError,
    VariantNotFound,
    alias_arms,
    load_config_dir,
    load_experiment_file,
)
from experiments.config import Experiment, load_surfaces_file
from experiments.store import (
    ApplyResult,
    Pin,
    PinChange,
    PostgresExperimentStore,
    pin_experiment,
    read_aliases,
    read_pins,
    repin,
)

app = typer.Typer(help="Experiment configuration and lifecycle.", no_args_is_help=True)
surfaces_app = typer.Typer(
    help="Surfaces and layers in the experiment store.", no_args_is_help=True
)
app.add_typer(surfaces_app, name="surfaces")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")
_SURFACES_FILE = re.compile(r"^\s*(surfaces|layers)\s*:", re.MULTILINE)

AuthorOpt = runtime.AUTHOR
ReasonOpt = typer.Option(None, "--reason", "-m", help="Why: kept in the history")


@app.command("validate")
def validate(paths: list[Path] = typer.Argument(..., help="Experiment files or folders")) -> None:
    """Validate experiment files (or folders, checked together); exit 1 naming every problem."""
    failed = False
    for p in paths:
        try:
            if p.is_dir():
                cfg = load_config_dir(p)
                err.print(
                    f"[green]ok[/] {p}: {len(cfg.surfaces)} surfaces, {len(cfg.experiments)} experiments"
                )
            else:
                e = load_experiment_file(p)
                err.print(f"[green]ok[/] {p}: experiment {e.key} ({len(e.variants)} variants)")
        except ConfigError as exc:
            failed = True
            for issue in exc.issues:
                err.print(f"[red]error[/] {issue}", highlight=False)
    raise typer.Exit(1 if failed else 0)


# --- running against the store ------------------------------------------------------------------


def _run(work: Callable[[PostgresExperimentStore], Awaitable[T]]) -> T:
    return runtime.run_on(PostgresExperimentStore, work)


def _print_results(results: list[tuple[str, ApplyResult]]) -> None:
    table = Table(
        "file",
        "kind",
        "name",
        "action",
        "version",
        "status",
        title="dry run" if any(r.dry_run for _, r in results) else None,
    )
    for file, r in results:
        style = "dim" if not r.changed else "green"
        table.add_row(
            file, r.kind, r.name, f"[{style}]{r.action}[/]", str(r.version), r.status or ""
        )
    out.print(table)
    for file, r in results:
        for w in r.warnings:
            err.print(f"[yellow]warning[/] {file}: {r.kind} '{r.name}': {w}", highlight=False)


@app.command("apply")
def apply(
    files: list[Path] = typer.Argument(..., help="Experiment files and/or surfaces files"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check and show what would change; write nothing"
    ),
    reason: str | None = ReasonOpt,
    force: bool = typer.Option(
        False, "--force", help="Allow changes that reshuffle units (needs --reason)"
    ),
    author: str | None = AuthorOpt,
) -> None:
    """Create or update experiments (and surfaces) from files; no change, no new version."""
    experiments: list[tuple[str, Experiment]] = []
    surfaces = []
    issues = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8") if f.is_file() else ""
            if _SURFACES_FILE.search(text):
                surfaces.append((str(f), load_surfaces_file(f)))
            else:
                experiments.append((str(f), load_experiment_file(f)))
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        for issue in issues:
            err.print(f"[red]error[/] {issue}", highlight=False)
        raise typer.Exit(1)

    async def work(store: PostgresExperimentStore) -> list[tuple[str, ApplyResult]]:
        done: list[tuple[str, ApplyResult]] = []
        for file, declared in surfaces:
            for r in await store.apply_surfaces(
                declared, author=runtime.author(author), reason=reason, dry_run=dry_run
            ):
                done.append((file, r))
        for file, e in experiments:
            r = await store.apply(
                e,
                author=runtime.author(author),
                reason=reason,
                force=force,
                dry_run=dry_run,
                source=file,
            )
            done.append((file, r))
        return done

    _print_results(_run(work))


@surfaces_app.command("apply")
def surfaces_apply(
    files: list[Path] = typer.Argument(..., help="Surfaces files (surfaces: and layers: lists)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing"),
    reason: str | None = ReasonOpt,
    author: str | None = AuthorOpt,
) -> None:
    """Create or update surfaces and layers; no change, no new version."""
    try:
        declared = [(str(f), load_surfaces_file(f)) for f in files]
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(f"[red]error[/] {issue}", highlight=False)
        raise typer.Exit(1) from None

    async def work(store: PostgresExperimentStore) -> list[tuple[str, ApplyResult]]:
        done: list[tuple[str, ApplyResult]] = []
        for file, d in declared:
            done += [
                (file, r)
                for r in await store.apply_surfaces(
                    d, author=runtime.author(author), reason=reason, dry_run=dry_run
                )
            ]
        return done

    _print_results(_run(work))


@app.command("list")
def list_(
    all_: bool = typer.Option(False, "--all", help="Include archived experiments"),
    as_json: bool = typer.Option(
        False, "--json", help="A JSON array on stdout (for scripts and the reports DAG)"
    ),
) -> None:
    """Experiments in the store, with their current version and status."""
    rows = _run(lambda store: store.list_experiments(include_archived=all_))
    if as_json:
        listed = [
            {
                "key": s.experiment.key,
                "surface": s.experiment.surface,
                "layer": s.experiment.layer,
                "status": s.experiment.status,
                "version": s.version,
                "traffic": s.experiment.traffic,
                "variants": [
                    {"key": v.key, "weight": v.weight, "model": v.model}
                    for v in s.experiment.variants
                ],
                "winner": s.experiment.winner,
                "updated": s.record.created_at.isoformat(),
                "by": s.record.author,
            }
            for s in rows
        ]
        typer.echo(json.dumps(listed, indent=2))
        return
    table = Table(
        "key", "surface", "layer", "status", "version", "traffic", "variants", "updated", "by"
    )
    for s in rows:
        e = s.experiment
        variants = ", ".join(f"{v.key}:{v.weight:g}" for v in e.variants)
        if e.winner:
            variants += f" (winner: {e.winner})"
        table.add_row(
            e.key,
            e.surface,
            e.layer or "-",
            e.status,
            str(s.version),
            f"{e.traffic:g}",
            variants,
            f"{s.record.created_at:%Y-%m-%d %H:%M}",
            s.record.author,
        )
    out.print(table)


def _yaml(body: dict[str, Any]) -> str:
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


@app.command("show")
def show(
    key: str, version: int | None = typer.Option(None, "--version", "-v", help="A past version")
) -> None:
    """One experiment as stored (the current version, or --version N), as YAML."""

    async def work(store: PostgresExperimentStore) -> tuple[Any, dict[tuple[str, str], Pin]]:
        return await store.get(key, version), await read_pins(store.pool, [key])

    s, pins = _run(work)
    r = s.record
    err.print(
        f"# {key} version {r.version}: {r.action} by {r.author} at {r.created_at:%Y-%m-%d %H:%M:%S%z}"
        + (f" ({r.reason})" if r.reason else ""),
        highlight=False,
    )
    for (_, variant), p in sorted(pins.items()):
        err.print(
            f"# pinned: {variant} serves models:/{p.model}/{p.version} (models:/{p.model}@{p.alias}"
            f" when pinned by {p.pinned_by} at {p.pinned_at:%Y-%m-%d %H:%M:%S%z})",
            highlight=False,
        )
    out.print(_yaml(r.body), highlight=False, markup=False)


@app.command("repin")
def repin_cmd(
    key: str,
    reason: str = typer.Option(..., "--reason", help="Why the arm moves (recorded)"),
    variant: str | None = typer.Option(None, "--variant", help="Only this variant's arm"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Experiment file (file-based set-up); default: the store"
    ),
    author: str | None = AuthorOpt,
) -> None:
    """Move alias arms to their alias's current version (audited; starts a new phase).

    A running experiment's arms named models:/NAME@ALIAS stay on the version
    pinned at start, whatever promotions happen; this is the one explicit way to
    move them. Reports then see a new allocation phase.
    """

    async def work(store: PostgresExperimentStore) -> list[PinChange]:
        if config is not None:
            experiment = load_experiment_file(config)
            if experiment.key != key:
                raise StoreError(f"{config} holds experiment '{experiment.key}', not '{key}'")
        else:
            experiment = Experiment.model_validate((await store.get(key)).record.body)
        try:
            arms = alias_arms(experiment, variant)
        except VariantNotFound as exc:
            raise StoreError(str(exc)) from None
        if not arms:
            raise StoreError(
                f"experiment '{key}' names no alias arm{' ' + variant if variant else ''}"
            )
        async with store.pool.acquire() as conn:
            return await repin(
                conn,
                key,
                arms,
                await read_aliases(conn),
                by=runtime.author(author),
                reason=reason,
            )

    changes = _run(work)
    if not changes:
        out.print(f"[dim]{key}: every alias arm is already on its alias's version[/]")
    for c in changes:
        out.print(
            f"[green]{key}[/] {c.variant}: models:/{c.model}/{c.previous or '-'} → "
            f"models:/{c.model}/{c.version} (models:/{c.model}@{c.alias}; {c.reason})",
            highlight=False,
        )


@app.command("diff")
def diff(
    key: str,
    file: Path | None = typer.Argument(None, help="Compare the stored version with this file"),
    version: int | None = typer.Option(
        None, "--version", "-v", help="Stored version (default: current)"
    ),
) -> None:
    """What ``apply FILE`` would change; without FILE, what version N changed from N-1."""
    e: Experiment | None = None
    if file is not None:
        try:
            e = load_experiment_file(file)
        except ConfigError as exc:
            for issue in exc.issues:
                err.print(f"[red]error[/] {issue}", highlight=False)
            raise typer.Exit(1) from None

    async def work(store: PostgresExperimentStore) -> tuple[str, str, str, str]:
        current = await store.get(key, version)
        if e is not None:
            body = e.model_dump(mode="json")
            for kept in ("status", "winner"):  # apply keeps them unless the file sets them
                if kept not in e.model_fields_set:
                    body[kept] = current.record.body.get(kept)
            return _yaml(current.record.body), _yaml(body), f"{key}@v{current.version}", str(file)
        if current.version == 1:
            return "", _yaml(current.record.body), "(nothing)", f"{key}@v1"
        before = await store.get(key, current.version - 1)
        return (
            _yaml(before.record.body),
            _yaml(current.record.body),
            f"{key}@v{before.version}",
            f"{key}@v{current.version}",
        )

    old_text, new_text, old_name, new_name = _run(work)
    lines = list(
        difflib.unified_diff(
            old_text.splitlines(), new_text.splitlines(), old_name, new_name, lineterm=""
        )
    )
    if not lines:
        err.print("no difference")
    for line in lines:
        style = (
            "green"
            if line.startswith("+")
            else "red"
            if line.startswith("-")
            else "cyan"
            if line.startswith("@")
            else None
        )
        out.print(line, style=style, highlight=False, markup=False)


@app.command("history")
def history(key: str) -> None:
    """Every version of an experiment: who, when, why, and what changed."""
    records = _run(lambda store: store.history(key))
    table = Table("version", "when", "author", "action", "status", "reason", "changed")
    previous: dict[str, Any] = {}
    for r in records:
        changed = (
            [k for k in r.body if r.body.get(k) != previous.get(k)] if previous else ["(created)"]
        )
        table.add_row(
            str(r.version),
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            r.author,
            r.action,
            r.status or "",
            r.reason or "",
            ", ".join(changed),
        )
        previous = r.body
    out.print(table)


def _transition(
    key: str, action: str, author: str | None, reason: str | None, winner: str | None = None
) -> None:
    r = _run(
        lambda store: store.transition(
            key, action, author=runtime.author(author), reason=reason, winner=winner
        )
    )
    for w in r.warnings:
        err.print(f"[yellow]warning[/] {w}", highlight=False)
    out.print(f"[green]{key}[/] is {r.status} (version {r.version})", highlight=False)
    if r.status == "running":
        # Pin alias arms now rather than at the first gateway's sight: a promotion right after
        # `start` must not change the arms either.
        async def pin(store: PostgresExperimentStore) -> dict[tuple[str, str], Pin]:
            body = (await store.get(key)).record.body
            return await pin_experiment(
                store.pool, Experiment.model_validate(body), by=runtime.author(author)
            )

        for (_, variant), p in sorted(_run(pin).items()):
            out.print(f"  {variant} pinned to models:/{p.model}/{p.version} (@{p.alias})")


@app.command("start")
def start(key: str, reason: str | None = ReasonOpt, author: str | None = AuthorOpt) -> None:
    """draft → running (a stopped experiment only with a new salt); checks every model is loaded."""
    _transition(key, "start", author, reason)


@app.command("pause")
def pause(key: str, reason: str | None = ReasonOpt, author: str | None = AuthorOpt) -> None:
    """running → paused: the surface serves its default, no exposures."""
    _transition(key, "pause", author, reason)


@app.command("resume")
def resume(key: str, reason: str | None = ReasonOpt, author: str | None = AuthorOpt) -> None:
    """paused → running: units get their variants back."""
    _transition(key, "resume", author, reason)


@app.command("stop")
def stop(
    key: str,
    winner: str | None = typer.Option(
        None, "--winner", help="Serve this variant's model to everyone"
    ),
    reason: str | None = ReasonOpt,
    author: str | None = AuthorOpt,
) -> None:
    """running/paused → stopped; with --winner the surface serves that model, no exposures."""
    _transition(key, "stop", author, reason, winner)


@app.command("archive")
def archive(key: str, reason: str | None = ReasonOpt, author: str | None = AuthorOpt) -> None:
    """draft/stopped → archived: out of every snapshot (a winner stops serving), kept in history."""
    _transition(key, "archive", author, reason)
