"""The Postgres shell of the experiments package: everything that talks to the database.

The pure core (``experiments``) never imports this package nor asyncpg; this package builds on
the core's types and rules.

- ``pool``: connection pools, one schema per deployment, migrated at start-up (``migrations``).
- ``experiment_store``: versioned experiments, surfaces and layers (``versions``: its records;
  ``referential``: the checks run inside its write transaction; ``snapshots``: building a
  ``ConfigSnapshot`` from its rows, and the disk cache of one).
- ``config_source``: ``PostgresConfigSource``, the live configuration, hot-reloaded.
- ``pins``: the versions alias arms of running experiments are pinned to.
- ``aliases``: the ``model_aliases`` query every package uses.
- ``keys``: API keys, hashed and audited.
"""

from experiments.store.aliases import read_aliases
from experiments.store.config_source import PostgresConfigSource
from experiments.store.experiment_store import NOTIFY_CHANNEL, PostgresExperimentStore
from experiments.store.keys import (
    KEY_PREFIX,
    KEYS_PAYLOAD_SUFFIX,
    ApiKey,
    KeyAudit,
    PostgresKeyStore,
    key_digest,
)
from experiments.store.migrations import migrate
from experiments.store.pins import (
    Pin,
    PinChange,
    pin_arms,
    pin_experiment,
    pin_history,
    pins_of_model,
    read_pins,
    repin,
)
from experiments.store.pool import Executor, create_pool
from experiments.store.versions import ApplyResult, StoredExperiment, VersionRecord

__all__ = [
    "KEYS_PAYLOAD_SUFFIX",
    "KEY_PREFIX",
    "NOTIFY_CHANNEL",
    "ApiKey",
    "ApplyResult",
    "Executor",
    "KeyAudit",
    "Pin",
    "PinChange",
    "PostgresConfigSource",
    "PostgresExperimentStore",
    "PostgresKeyStore",
    "StoredExperiment",
    "VersionRecord",
    "create_pool",
    "key_digest",
    "migrate",
    "pin_arms",
    "pin_experiment",
    "pin_history",
    "pins_of_model",
    "read_aliases",
    "read_pins",
    "repin",
]
