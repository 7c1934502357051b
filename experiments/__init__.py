"""Domain core: experiment configuration, assignment and routing, event records, shared contracts.

Pure: no database driver is imported here (asyncpg lives in ``experiments.store``, the Postgres
shell). This package imports nothing else of abgate; every other package may import it.
"""

from experiments.arms import AliasArm, alias_arms
from experiments.assignment import BUCKETS, assign, bucket, bucket_bounds, variant_index
from experiments.config import (
    ConfigSet,
    Experiment,
    Layer,
    Metric,
    Surface,
    SurfacesFile,
    Variant,
    load_config_dir,
    load_experiment_file,
    parse_experiment,
    parse_surfaces,
)
from experiments.contracts import archive_hour, archive_path, results_key, results_key_head
from experiments.errors import (
    ConfigError,
    ConfigIssue,
    ExperimentNotFound,
    ExperimentsError,
    KeyChangeRefused,
    LifecycleError,
    MissingModelError,
    ModelRefError,
    ReshuffleRefused,
    StoreError,
    StoreUnavailable,
    SurfaceNotFound,
    TargetingError,
    VariantNotFound,
)
from experiments.modelref import ModelRef, ModelVersion
from experiments.records import Exposure, Outcome, Record, new_event_id, utc_timestamp
from experiments.routing import Route, Router
from experiments.settings import Settings
from experiments.source import ConfigSnapshot, ConfigSource, YamlDirectorySource
from experiments.targeting import compile_condition

__all__ = [
    "BUCKETS",
    "AliasArm",
    "ConfigError",
    "ConfigIssue",
    "ConfigSet",
    "ConfigSnapshot",
    "ConfigSource",
    "Experiment",
    "ExperimentNotFound",
    "ExperimentsError",
    "Exposure",
    "KeyChangeRefused",
    "Layer",
    "LifecycleError",
    "Metric",
    "MissingModelError",
    "ModelRef",
    "ModelRefError",
    "ModelVersion",
    "Outcome",
    "Record",
    "ReshuffleRefused",
    "Route",
    "Router",
    "Settings",
    "StoreError",
    "StoreUnavailable",
    "Surface",
    "SurfaceNotFound",
    "SurfacesFile",
    "TargetingError",
    "Variant",
    "VariantNotFound",
    "YamlDirectorySource",
    "alias_arms",
    "archive_hour",
    "archive_path",
    "assign",
    "bucket",
    "bucket_bounds",
    "compile_condition",
    "load_config_dir",
    "load_experiment_file",
    "new_event_id",
    "parse_experiment",
    "parse_surfaces",
    "results_key",
    "results_key_head",
    "utc_timestamp",
    "variant_index",
]
