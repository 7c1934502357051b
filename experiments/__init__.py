"""Domain core: experiment configuration, assignment and routing, event records, the store.

This package imports nothing else of abgate; every other package may import it.
"""

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
from experiments.errors import ConfigError, ConfigIssue, ExperimentsError, ModelRefError
from experiments.lifecycle import (
    ExperimentNotFound,
    LifecycleError,
    MissingModelError,
    ReshuffleRefused,
    StoreError,
    StoreUnavailable,
)
from experiments.modelref import ModelRef, ModelVersion
from experiments.pg_source import PostgresConfigSource
from experiments.records import Exposure, Outcome, Record, new_event_id, utc_timestamp
from experiments.routing import Route, Router
from experiments.settings import Settings
from experiments.source import ConfigSnapshot, ConfigSource, YamlDirectorySource
from experiments.store import PostgresExperimentStore
from experiments.targeting import TargetingError, compile_condition

__all__ = [
    "BUCKETS",
    "ConfigError",
    "ConfigIssue",
    "ConfigSet",
    "ConfigSnapshot",
    "ConfigSource",
    "Experiment",
    "ExperimentNotFound",
    "ExperimentsError",
    "Exposure",
    "Layer",
    "LifecycleError",
    "Metric",
    "MissingModelError",
    "ModelRef",
    "ModelRefError",
    "ModelVersion",
    "Outcome",
    "PostgresConfigSource",
    "PostgresExperimentStore",
    "Record",
    "ReshuffleRefused",
    "Route",
    "Router",
    "Settings",
    "StoreError",
    "StoreUnavailable",
    "Surface",
    "SurfacesFile",
    "TargetingError",
    "Variant",
    "YamlDirectorySource",
    "assign",
    "bucket",
    "bucket_bounds",
    "compile_condition",
    "load_config_dir",
    "load_experiment_file",
    "new_event_id",
    "parse_experiment",
    "parse_surfaces",
    "utc_timestamp",
    "variant_index",
]
