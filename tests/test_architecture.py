"""The architecture, checked on the source: who may import whom (DESIGN.md's table), no import
cycle inside a package, light import paths, and each package's public names.

The one place for such rules: a new rule is a test here, in this style (the AST of the files,
or a fresh interpreter for what an import pulls in).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "experiments",
    "registry",
    "batch",
    "gateway",
    "analysis",
    "loadtests",
    "abgate",
    "benchmarks",
}
ALLOWED = {
    "experiments": set(),
    "registry": {"experiments"},
    "batch": {"experiments", "registry"},
    "gateway": {"experiments", "registry"},
    "analysis": {"experiments"},
    "loadtests": set(),
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_design_allows(package: str) -> None:
    offences = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) - ALLOWED[package] - {package}
        if bad:
            offences.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize(
    ("imports", "heavy"),
    [
        pytest.param("gateway, gateway.app", "mlflow duckdb scipy pandas sklearn", id="gateway"),
        pytest.param("gateway.app, registry", "mlflow", id="registry"),
        # callers install abgate for the client: it must not drag the server's stack in
        pytest.param(
            "abgate.client",
            "starlette uvicorn asyncpg redis mlflow experiments gateway registry",
            id="client",
        ),
    ],
)
def test_an_import_path_stays_light(imports: str, heavy: str) -> None:
    code = (
        f"import sys, {imports}\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy.split()!r} "
        "or m.startswith('google.cloud'))\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""


def test_the_client_library_imports_nothing_of_ours_but_itself() -> None:
    offences = []
    for path in sorted((ROOT / "abgate" / "client").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offences += [
                f"{path.relative_to(ROOT)} imports {n}"
                for n in names
                if n.split(".")[0] in OURS and not n.startswith("abgate.client")
            ]
    assert not offences, "\n".join(offences)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, at module level or deferred inside
    a function (a deferred import still makes a cycle, only a hidden one). A module importing
    its own package (``from batch import ...`` in ``batch.x``) is not counted."""
    modules = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            graph[name] |= {
                t for t in targets if t in modules and t != name and not name.startswith(t + ".")
            }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_it() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "package",
    [
        *sorted(OURS),
    ],
)
def test_no_import_cycle_inside_a_package(package: str) -> None:
    assert cycles(import_graph(package)) == []


@pytest.mark.parametrize(
    "package",
    [
        "experiments",
        "experiments.store",
        "gateway",
        "batch",
        "analysis",
        "loadtests",
        "abgate.client",
    ],
)
def test_package_exports_exactly_its_all(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names missing attributes: {missing}"
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(package + ".")
    }
    assert public <= exported, (
        f"{package} exposes names not in __all__: {sorted(public - exported)}"
    )


def test_the_experiments_core_imports_neither_its_store_nor_a_database_driver() -> None:
    """The pure core (every module of experiments/ outside experiments/store/) stays pure."""
    offences = []
    for path in sorted((ROOT / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            offences += [
                f"{path.relative_to(ROOT)} imports {n}"
                for n in names
                if n.split(".")[0] == "asyncpg" or n.startswith("experiments.store")
            ]
    assert not offences, "\n".join(offences)


def test_importing_the_experiments_core_loads_no_database_driver() -> None:
    code = (
        "import sys, experiments\n"
        "print(','.join(sorted(m for m in sys.modules"
        " if m.split('.')[0] == 'asyncpg' or m.startswith('experiments.store'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""


# The public names of each package, pinned: a change of a package's surface shows here.
PUBLIC = {
    "experiments": {
        *("BUCKETS", "AliasArm", "ConfigIssue", "ConfigSet", "ConfigSnapshot", "ConfigSource"),
        *("Experiment", "Exposure", "Layer", "Metric", "ModelRef", "ModelVersion", "Outcome"),
        *("Record", "Route", "Router", "Settings", "Surface", "SurfacesFile", "Variant"),
        *("YamlDirectorySource", "alias_arms", "assign", "bucket", "bucket_bounds"),
        *("compile_condition", "load_config_dir", "load_experiment_file", "new_event_id"),
        *("parse_experiment", "parse_surfaces", "utc_timestamp", "variant_index"),
        # the shared contracts
        *("archive_hour", "archive_path", "results_key", "results_key_head"),
        # the error tree
        *("ExperimentsError", "ConfigError", "ModelRefError", "TargetingError"),
        *("SurfaceNotFound", "VariantNotFound", "StoreError", "ExperimentNotFound"),
        *("LifecycleError", "ReshuffleRefused", "MissingModelError", "KeyChangeRefused"),
        "StoreUnavailable",
    },
    "experiments.store": {
        *("KEYS_PAYLOAD_SUFFIX", "KEY_PREFIX", "NOTIFY_CHANNEL", "ApiKey", "ApplyResult"),
        *("Executor", "KeyAudit", "Pin", "PinChange", "PostgresConfigSource"),
        *("PostgresExperimentStore", "PostgresKeyStore", "StoredExperiment", "VersionRecord"),
        *("create_pool", "key_digest", "migrate", "pin_arms", "pin_experiment", "pin_history"),
        *("pins_of_model", "read_aliases", "read_pins", "repin"),
    },
    "batch": {
        *("BatchError", "LoadConflict", "LoadError", "PredictError", "SourceError"),
        *("VersionError", "VersionInUse", "WarmError"),
        *("DEFAULT_UNIT", "Input", "Limits", "LoadSummary", "Progress", "UnitBatch"),
        *("VersionInfo", "WarmSummary"),
        *("activate", "drop", "in_use", "list_versions", "load_results"),
        *("open_input", "read_results", "recent_units", "retention_candidates", "rollback"),
        *("rows_input", "serving_refs", "set_alias", "warm"),
    },
    "registry": {
        *("AliasError", "RegistryError", "RegistryUnavailable"),
        *("AliasMove", "DatasetRef", "Evidence", "MlflowRegistry", "ModelRegistry"),
        *("RegisteredVersion", "RunInfo"),
        *("alias_history", "promote", "promotions_of", "rollback_alias"),
        *("rollback_target", "set_alias", "sync_aliases"),
    },
    "analysis": {
        *("AnalysisError", "ArchiveError", "BigQueryError", "NoExposures"),
        *("ArchiveSource", "BigQuerySource", "CohortSource"),
        *("Aggregates", "Comparison", "DailyPoint", "Decision", "GuardrailStatus"),
        *("LookEstimate", "MetricResult", "Power", "Report", "ReportOptions"),
        *("VariantSummary", "VariantVerdict", "Verdict"),
        *("analyse", "build_report", "decide", "render_html", "render_table"),
    },
    "gateway": {"create_app"},
    "abgate.client": {
        *("AsyncClient", "BaseClient", "CallStats", "CircuitBreaker", "Client"),
        *("Event", "EventResult", "EventStats", "Item", "ModelInfo", "Recommendation"),
    },
    "loadtests": {
        *("LoadResult", "Scenario", "UnitChoice", "run", "run_closed_loop", "run_open_loop"),
        *("to_json", "to_table"),
    },
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_package_public_names_are_pinned(package: str) -> None:
    assert set(importlib.import_module(package).__all__) == PUBLIC[package]
