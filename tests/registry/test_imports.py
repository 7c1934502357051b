"""Import rules: the gateway never pays for MLflow or Arrow; the public names are fixed."""

from __future__ import annotations

import subprocess
import sys

import batch
import registry


def test_importing_the_gateway_and_the_registry_does_not_import_mlflow() -> None:
    code = (
        "import sys, gateway.app, registry; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names() -> None:
    assert set(registry.__all__) == {
        "AliasError",
        "AliasMove",
        "DatasetRef",
        "Evidence",
        "MlflowRegistry",
        "ModelRegistry",
        "RegisteredVersion",
        "RegistryError",
        "RegistryUnavailable",
        "RunInfo",
        "alias_history",
        "promote",
        "promotions_of",
        "rollback_alias",
        "rollback_target",
        "set_alias",
        "sync_aliases",
    }
    assert {
        "load_results",
        "read_results",
        "set_alias",
        "warm",
        "activate",
        "rollback",
        "drop",
    } <= set(batch.__all__)
    assert all(hasattr(batch, n) for n in batch.__all__)
