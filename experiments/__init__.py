"""Domain core: experiment configuration, deterministic assignment, event records.

This package imports nothing else of abgate; every other package may import it.
"""

from experiments.assignment import BUCKETS, assign, bucket, bucket_bounds, variant_index
from experiments.config import (
    ConfigSet,
    Experiment,
    Metric,
    Surface,
    Variant,
    load_config_dir,
    load_experiment_file,
    parse_experiment,
    parse_surfaces,
)
from experiments.errors import ConfigError, ConfigIssue, ExperimentsError, ModelRefError
from experiments.modelref import ModelRef, ModelVersion
from experiments.records import Exposure, Outcome, Record, new_event_id, utc_timestamp

__all__ = [
    "BUCKETS",
    "ConfigError",
    "ConfigIssue",
    "ConfigSet",
    "Experiment",
    "ExperimentsError",
    "Exposure",
    "Metric",
    "ModelRef",
    "ModelRefError",
    "ModelVersion",
    "Outcome",
    "Record",
    "Surface",
    "Variant",
    "assign",
    "bucket",
    "bucket_bounds",
    "load_config_dir",
    "load_experiment_file",
    "new_event_id",
    "parse_experiment",
    "parse_surfaces",
    "utc_timestamp",
    "variant_index",
]
