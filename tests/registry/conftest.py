"""Fixtures of the registry tests: a real sqlite-backed MLflow registry, a Postgres pool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A sqlite registry holding the example model as home_recs/1 (@champion), and its features."""
    import mlflow

    from batch.example_model import features_of, log_example_model, synthetic_interactions
    from registry import MlflowRegistry

    root = tmp_path_factory.mktemp("mlflow")
    registry = MlflowRegistry(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment(
            "abgate", artifact_location=(root / "artifacts").as_uri()
        )
    )
    inter = synthetic_interactions(units=300, items=120)
    log_example_model("home_recs", inter, alias="champion")
    features = root / "features.parquet"
    features_of(inter).to_parquet(features, index=False)
    yield registry, features
