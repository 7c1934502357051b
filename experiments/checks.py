"""Cross-object checks of a configuration: what no single file can check on its own.

- every experiment sits on a declared surface, and a named layer is declared;
- on one surface, running experiments share one layer (a request serves one model, so two
  experiments that could both hold a unit would have to pick between them);
- in one layer, running experiments own disjoint slices, so a unit is in at most one of them;
- a unit id is forced into at most one running experiment per surface;
- at most one stopped experiment per surface serves its winner.

The same checks run on a folder of files, at ``apply`` time in the store (on the configuration
as it would be after the change), and on every snapshot a replica loads.
"""

from __future__ import annotations

from experiments.errors import ConfigIssue
from experiments.layers import overlap
from experiments.schema import ConfigSet, Experiment


def _file(config: ConfigSet, e: Experiment) -> str:
    return config.sources.get(e.key, f"experiment:{e.key}")


def check_references(config: ConfigSet) -> list[ConfigIssue]:
    """Every cross-object problem of ``config``, each located on the experiment it concerns.

    Conflicts are reported on the later experiment in ``config.experiments`` order, so a store
    that puts the experiment being changed last reports them on that experiment.
    """
    issues: list[ConfigIssue] = []
    surface_layer: dict[str, tuple[str, str]] = {}  # surface -> (layer id, first experiment)
    slices: dict[str, list[tuple[tuple[int, int], str]]] = {}
    forced: dict[tuple[str, str], str] = {}
    winners: dict[str, str] = {}
    for e in config.experiments.values():
        file = _file(config, e)
        if e.surface not in config.surfaces:
            known = ", ".join(sorted(config.surfaces)) or "none declared"
            issues.append(
                ConfigIssue(file, "surface", f"unknown surface '{e.surface}' (surfaces: {known})")
            )
        if e.layer is not None and e.layer not in config.layers:
            known = ", ".join(sorted(config.layers)) or "none declared"
            issues.append(
                ConfigIssue(
                    file,
                    "layer",
                    f"unknown layer '{e.layer}' (layers: {known}); declare it in a surfaces file",
                )
            )
        if e.status == "stopped" and e.winner is not None:
            if e.surface in winners:
                issues.append(
                    ConfigIssue(
                        file,
                        "winner",
                        f"surface '{e.surface}' already serves the winner of '{winners[e.surface]}'; archive it first",
                    )
                )
            winners.setdefault(e.surface, e.key)
        if e.status != "running":
            continue
        issues.extend(_check_running(e, file, surface_layer, slices, forced))
    return issues


def _check_running(
    e: Experiment,
    file: str,
    surface_layer: dict[str, tuple[str, str]],
    slices: dict[str, list[tuple[tuple[int, int], str]]],
    forced: dict[tuple[str, str], str],
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    layer = e.layer_id
    first = surface_layer.setdefault(e.surface, (layer, e.key))
    if first[0] != layer:
        issues.append(
            ConfigIssue(
                file,
                "layer",
                f"surface '{e.surface}' already runs '{first[1]}' in layer '{first[0]}'; "
                f"running experiments of one surface must share a layer (this one is in '{layer}')",
            )
        )
    mine = e.layer_slice
    for other_slice, other in slices.get(layer, []):
        if overlap(mine, other_slice):
            issues.append(
                ConfigIssue(
                    file,
                    "layer_range",
                    f"overlaps running experiment '{other}' in layer '{layer}' "
                    f"(buckets {list(mine)} and {list(other_slice)}); give each a disjoint layer_range, "
                    f"e.g. [0, 0.5] and [0.5, 1]",
                )
            )
    slices.setdefault(layer, []).append((mine, e.key))
    for unit in e.forced:
        other_key = forced.setdefault((e.surface, unit), e.key)
        if other_key != e.key:
            issues.append(
                ConfigIssue(
                    file,
                    f"forced.{unit}",
                    f"unit is also forced in running experiment '{other_key}' on surface '{e.surface}'",
                )
            )
    return issues
