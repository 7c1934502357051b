"""An example recommender to exercise ``abgate batch predict`` offline: item co-occurrence with a
popularity prior, as an ``mlflow.pyfunc`` model, registered in any MLflow registry (sqlite too).

Input: a DataFrame with ``unit_id`` and ``history`` (the unit's past items: a list, or a string
of space-separated ids). Output: one row per input row, ``item_ids`` and ``scores`` lists, best
first, without the items already in the history. ``params={"top_k": K}`` sets the list length.
A unit without history gets the most popular items (which is also the default list).
"""

from __future__ import annotations

from typing import Any

import mlflow
import mlflow.data
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from experiments import ModelVersion

POPULARITY_WEIGHT = 1e-3  # ties between co-occurrence scores go to the more popular item


class CoOccurrenceRecommender(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """score(item | history) = sum of co-occurrence counts with the history + a popularity prior."""

    def __init__(self, items: list[str], popularity: np.ndarray, cooc: np.ndarray) -> None:
        self.items = items
        self.popularity = popularity.astype(np.float32)
        self.cooc = cooc.astype(np.float32)

    @classmethod
    def fit(cls, interactions: pd.DataFrame) -> CoOccurrenceRecommender:
        """Learn from ``unit_id, item_id`` interaction rows."""
        items = sorted(interactions["item_id"].unique())
        index = {it: i for i, it in enumerate(items)}
        units = interactions["unit_id"].astype("category").cat.codes.to_numpy()
        cols = interactions["item_id"].map(index).to_numpy()
        m = np.zeros((units.max() + 1, len(items)), np.float32)
        m[units, cols] = 1.0
        cooc = m.T @ m
        np.fill_diagonal(cooc, 0.0)
        popularity = m.sum(axis=0)
        return cls(items, popularity / max(popularity.max(), 1.0), cooc)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Top-K items per row (see the module docstring)."""
        k = min(int((params or {}).get("top_k", 10)), len(self.items))
        index = {it: i for i, it in enumerate(self.items)}
        seen = np.zeros((len(model_input), len(self.items)), np.float32)
        for r, h in enumerate(model_input["history"]):
            # a missing history is None, or NaN once Spark's Arrow batches become pandas
            if isinstance(h, str):
                ids = h.split()
            elif isinstance(h, list | tuple | np.ndarray):
                ids = list(h)
            else:
                ids = []
            cols = [index[i] for i in ids if i in index]
            seen[r, cols] = 1.0
        scores = seen @ self.cooc + POPULARITY_WEIGHT * self.popularity
        scores[seen > 0] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        names = np.asarray(self.items, dtype=object)
        # A unit's own history scores -inf: when K exceeds the items left, the list is shorter.
        keep = np.isfinite(top_scores)
        return pd.DataFrame(
            {
                "item_ids": [list(names[row][ok]) for row, ok in zip(top, keep, strict=True)],
                "scores": [
                    [round(float(s), 6) for s in row[ok]]
                    for row, ok in zip(top_scores, keep, strict=True)
                ],
            }
        )


def synthetic_interactions(
    units: int = 500, items: int = 200, per_unit: int = 8, seed: int = 0
) -> pd.DataFrame:
    """Interactions with a popularity skew and item clusters, so co-occurrence means something."""
    rng = np.random.default_rng(seed)
    clusters = 10
    rows = []
    for u in range(units):
        c = rng.integers(clusters)
        pool = np.arange(c, items, clusters)
        weights = 1.0 / (1 + np.arange(len(pool)))
        chosen = rng.choice(
            pool, size=min(per_unit, len(pool)), replace=False, p=weights / weights.sum()
        )
        rows += [(f"u{u}", f"sku-{i}") for i in chosen]
    return pd.DataFrame(rows, columns=["unit_id", "item_id"])


def features_of(interactions: pd.DataFrame) -> pd.DataFrame:
    """The ``unit_id, history`` feature table of interactions (history space-separated)."""
    g = interactions.groupby("unit_id", sort=False)["item_id"].agg(" ".join)
    return pd.DataFrame({"unit_id": g.index.astype(str), "history": g.to_numpy()})


def log_example_model(
    name: str,
    interactions: pd.DataFrame,
    *,
    alias: str | None = None,
    top_k: int = 10,
    source: str | None = None,
) -> ModelVersion:
    """Fit, log and register the example model in the current MLflow tracking URI.

    The interactions are the run's ``training`` input (``mlflow.data``), with ``source`` (their
    file's URI, say) as the dataset's source.
    """
    model = CoOccurrenceRecommender.fit(interactions)
    example = features_of(interactions).head(3)
    signature = infer_signature(
        example, model.predict(None, example, {"top_k": top_k}), params={"top_k": top_k}
    )
    with mlflow.start_run(run_name=f"{name}-cooccurrence"):
        mlflow.log_params({"items": len(model.items), "units": interactions["unit_id"].nunique()})
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            interactions, source=source, name="interactions"
        )
        mlflow.log_input(dataset, context="training")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=signature,
            input_example=example,
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    if alias:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    return ModelVersion(name, version)
