"""The README tour's MLflow registry: home_recs versions 1 (@champion) and 2, as a team's would be.

Reads MLFLOW_TRACKING_URI (e.g. sqlite:///mlflow.db) like every MLflow tool; needs abgate[mlflow].

    python examples/register_models.py
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from mlflow import MlflowClient

if __name__ == "__main__":
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its table-creation chatter
    client = MlflowClient()
    client.create_registered_model("home_recs", description="abgate tour ranker")
    artifacts = Path(tempfile.mkdtemp(prefix="home_recs-"))  # a model's files would be here
    for _ in ("1", "2"):
        client.create_model_version("home_recs", source=artifacts.as_uri())
    client.set_registered_model_alias("home_recs", "champion", "1")
    print("registered home_recs 1 (@champion) and 2 at", client.tracking_uri)
