"""Experiment and surface configuration: the YAML schema of DESIGN.md, validated with located errors.

An experiment file holds one experiment (a mapping with ``key``); a surfaces file holds a
mapping with a ``surfaces`` list (and optionally ``layers``). Every problem is reported with the
file, the line and the field it concerns (``experiments/home.yaml:7: field 'variants[1].weight'
must be >= 0``), and all problems of a file are reported at once. The objects themselves are
defined in experiments/schema.py and re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from experiments.checks import check_references
from experiments.errors import ConfigError, ConfigIssue
from experiments.schema import (
    ConfigSet,
    Experiment,
    Key,
    Layer,
    Metric,
    MetricKind,
    Share,
    Status,
    Surface,
    SurfacesFile,
    Variant,
)

__all__ = [
    "ConfigSet",
    "Experiment",
    "Key",
    "Layer",
    "Metric",
    "MetricKind",
    "Share",
    "Status",
    "Surface",
    "SurfacesFile",
    "Variant",
    "load_config_dir",
    "load_experiment_file",
    "load_surfaces_file",
    "parse_experiment",
    "parse_surfaces",
    "parse_surfaces_file",
]


# --- YAML with line numbers -------------------------------------------------------------------


def _line_index(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    """Record the 1-based line of every mapping key and sequence item below ``node``."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            out[(*path, key)] = k.start_mark.line + 1
            _line_index(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _line_index(item, (*path, i), out)


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(file, "", f"is not valid YAML: {problem}", line)]) from exc
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    return data, lines


def _field_name(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _issues_from(
    exc: ValidationError, file: str, lines: Mapping[tuple[Any, ...], int]
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        # pydantic adds the validator's mode to locations of model validators; drop non-path parts.
        loc = tuple(
            p for p in err["loc"] if isinstance(p, int) or not str(p).startswith("function-")
        )
        line = None
        for n in range(len(loc), -1, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif err["type"] == "missing":
            msg = "is required"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif err["type"] == "string_pattern_mismatch":
            msg = "must start with a letter or digit and hold only letters, digits, '_', '.', '-'"
        issues.append(ConfigIssue(file, _field_name(loc), msg, line))
    return issues


_SURFACES_FILE = re.compile(r"^\s*(surfaces|layers)\s*:", re.MULTILINE)


def parse_experiment(text: str, file: str = "<string>") -> Experiment:
    """Validate one experiment document; raise ConfigError naming file, line and field."""
    data, lines = _parse_yaml(text, file)
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    file, "", "must be a mapping with at least 'key', 'surface', 'variants'", 1
                )
            ]
        )
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_issues_from(exc, file, lines)) from None


def parse_surfaces(text: str, file: str = "<string>") -> list[Surface]:
    """Validate a surfaces document; raise ConfigError naming file, line and field."""
    return parse_surfaces_file(text, file).surfaces


def parse_surfaces_file(text: str, file: str = "<string>") -> SurfacesFile:
    """Validate a surfaces document (surfaces and layers); raise located ConfigError."""
    data, lines = _parse_yaml(text, file)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, "", "must be a mapping with a 'surfaces' list", 1)])
    try:
        return SurfacesFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_issues_from(exc, file, lines)) from None


def load_surfaces_file(path: str | Path) -> SurfacesFile:
    """Read and validate one surfaces file."""
    p = Path(path)
    return parse_surfaces_file(_read(p), str(p))


def load_experiment_file(path: str | Path) -> Experiment:
    """Read and validate one experiment file."""
    p = Path(path)
    return parse_experiment(_read(p), str(p))


def _read(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(p), "", f"cannot be read: {exc}")]) from exc


def load_config_dir(directory: str | Path) -> ConfigSet:
    """Load every ``*.yaml``/``*.yml`` file of ``directory`` and check them together.

    A file whose top level has ``surfaces:`` or ``layers:`` declares surfaces and layers; any
    other file is one experiment. Cross-file checks (experiments/checks.py): unique names, every
    experiment on a declared surface and layer, running experiments of a layer on disjoint
    slices. Every problem of every file is reported.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError([ConfigIssue(str(root), "", "is not a directory of experiment files")])
    issues: list[ConfigIssue] = []
    surfaces: dict[str, Surface] = {}
    layers: dict[str, Layer] = {}
    experiments: dict[str, Experiment] = {}
    sources: dict[str, str] = {}
    for p in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        text = _read(p)
        try:
            if _SURFACES_FILE.search(text):
                declared = parse_surfaces_file(text, str(p))
                for kind, items in (("surface", declared.surfaces), ("layer", declared.layers)):
                    table: dict[str, Any] = surfaces if kind == "surface" else layers
                    for item in items:
                        if item.name in table:
                            where = sources[f"{kind}:{item.name}"]
                            issues.append(
                                ConfigIssue(
                                    str(p),
                                    f"{kind}s",
                                    f"{kind} '{item.name}' is also declared in {where}",
                                )
                            )
                        table[item.name] = item
                        sources[f"{kind}:{item.name}"] = str(p)
            else:
                e = parse_experiment(text, str(p))
                if e.key in experiments:
                    issues.append(
                        ConfigIssue(
                            str(p),
                            "key",
                            f"experiment '{e.key}' is also defined in {sources[e.key]}",
                        )
                    )
                experiments[e.key] = e
                sources[e.key] = str(p)
        except ConfigError as exc:
            issues.extend(exc.issues)
    config = ConfigSet(surfaces, experiments, sources, layers)
    issues.extend(check_references(config))
    if issues:
        raise ConfigError(issues)
    return config
