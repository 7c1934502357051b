"""The one settings object of abgate, read from ``ABGATE_*`` environment variables.

Every field is documented in docs/operators.md. Packages receive this object (or values
from it) through constructors; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_SINKS = ("archive", "cloud-logging", "stdout")


class Settings(BaseSettings):
    """Deployment settings. Unset service URLs mean "start embedded servers" (CLI and demo only)."""

    model_config = SettingsConfigDict(env_prefix="ABGATE_", extra="ignore", frozen=True)

    # Services
    postgres_dsn: str | None = Field(
        None, description="Postgres DSN; unset: embedded server in data_dir"
    )
    postgres_schema: str = Field("abgate", description="Schema holding abgate's tables")
    postgres_pool_min: int = Field(1, ge=0)
    postgres_pool_max: int = Field(10, ge=1)
    postgres_timeout: float = Field(2.0, gt=0, description="Seconds per query on the request path")
    postgres_retry_after: float = Field(
        1.0, ge=0, description="Seconds to skip Postgres result reads after one failed"
    )
    redis_url: str | None = Field(None, description="Redis URL; unset: embedded server in data_dir")
    redis_read_url: str | None = Field(
        None,
        description="Redis URL for cache reads (a read replica); unset: reads go to redis_url",
    )
    redis_prefix: str = Field("abgate:", description="Prefix of every Redis key")
    redis_timeout: float = Field(
        0.1, gt=0, description="Seconds per Redis call on the request path"
    )
    redis_pool_max: int = Field(64, ge=1)
    redis_retry_after: float = Field(1.0, ge=0, description="Seconds to skip Redis after it failed")
    cache_ttl: int = Field(3600, ge=1, description="TTL (s) of cached result lists in Redis")
    negative_cache_ttl: int = Field(60, ge=0, description="TTL (s) of 'unit has no list' markers")
    local_cache_size: int = Field(
        100_000, ge=0, description="Entries of the in-process cache at most; 0 = off"
    )
    local_cache_mb: float = Field(
        256,
        ge=0,
        description="Memory of the in-process cache at most (MiB, estimated: ~27 KB per "
        "100-item list); 0 = off",
    )
    alias_refresh: float = Field(5.0, gt=0, description="Seconds between model alias refreshes")

    # Experiments
    experiments_dir: Path | None = Field(
        None, description="Folder of experiment YAML files; unset: the Postgres experiment store"
    )
    config_cache_file: Path | None = Field(
        None,
        description="Last-known-good config snapshot on disk; unset: data_dir/config-snapshot.json",
    )
    config_poll_interval: float = Field(
        5.0, gt=0, description="Seconds between store polls (NOTIFY is the fast path)"
    )

    # Logging sink
    log_sink: str = Field(
        "archive",
        description="Where exposures and outcomes go, comma-separated: archive (the local "
        "archive), cloud-logging (Cloud Logging's API), stdout (JSON lines for Cloud Run's agent)",
    )
    cloud_logging_endpoint: str = Field(
        "https://logging.googleapis.com",
        description="Cloud Logging API root (with log_sink=cloud-logging)",
    )
    archive_dir: Path = Field(Path(".abgate/archive"), description="Root of the local log archive")
    gcp_project: str = Field("local", description="Project id in logName")
    log_id: str = Field("abgate-events", description="Log id: logName and archive top folder")
    log_flush_interval: float = Field(0.2, gt=0, description="Seconds between archive flushes")
    log_batch_size: int = Field(1000, ge=1, description="Records per archive write at most")
    log_queue_max: int = Field(
        1_000_000, ge=1, description="Records held in memory before dropping"
    )
    spool_dir: Path | None = Field(
        None, description="On-disk spool of records a sink could not take; unset: data_dir/spool"
    )
    spool_max_mb: float = Field(
        256, ge=0, description="Size of each sink's spool at most (MiB); 0 = no spool"
    )
    spool_full: Literal["shed", "refuse"] = Field(
        "shed",
        description="When the spool is full: shed (drop records, keep serving) or refuse "
        "(503 for experiment traffic and events)",
    )

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(
        8000,
        ge=0,
        le=65535,
        # Cloud Run sets PORT; ABGATE_PORT, when set, wins.
        validation_alias=AliasChoices("abgate_port", "port"),
        description="Port; unset: PORT (Cloud Run), else 8000",
    )
    workers: int = Field(
        1, ge=1, description="Gateway processes sharing the port (one per vCPU); 1: no supervisor"
    )
    api_tokens: str = Field("", description="Comma-separated bearer tokens; empty: no auth")
    api_keys: bool = Field(
        False,
        description="Require API keys from Postgres (abgate keys); tokens stay accepted beside them",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1)
    header_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds for a request's headers to arrive, else the connection closes",
    )
    body_timeout: float = Field(
        5.0, gt=0, description="Seconds for a request's body to arrive, else the connection closes"
    )
    keep_alive_timeout: float = Field(
        5.0, gt=0, description="Seconds an idle kept-alive connection stays open"
    )
    max_concurrency: int = Field(
        1000,
        ge=1,
        description="Requests in flight per process; beyond: a fast 503",
    )

    prometheus_multiproc_dir: Path | None = Field(
        None,
        # prometheus-client reads this variable itself (no ABGATE_ prefix); the field name is
        # kept for Settings(prometheus_multiproc_dir=...).
        validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"),
        description="Folder of prometheus-client's multiprocess mode, used when workers > 1; "
        "unset: abgate serve --workers makes a temporary one",
    )

    # Local state
    data_dir: Path = Field(
        Path(".abgate"), description="Embedded servers' data and the demo's files"
    )

    @field_validator("log_sink")
    @classmethod
    def _known_sinks(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in LOG_SINKS]
        if not names or unknown:
            raise ValueError(
                f"unknown log sink {', '.join(unknown) or '(none)'}: use one or more of "
                f"{', '.join(LOG_SINKS)}, comma-separated"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"a log sink is named twice in {value!r}")
        return ",".join(names)

    @property
    def log_sinks(self) -> tuple[str, ...]:
        """The sinks named by ``log_sink``, in order."""
        return tuple(self.log_sink.split(","))

    @property
    def spool_folder(self) -> Path:
        """Where each sink's spool lives (one folder per sink below it)."""
        return self.spool_dir or self.data_dir / "spool"

    @property
    def snapshot_file(self) -> Path:
        """Where the last-known-good configuration is kept."""
        return self.config_cache_file or self.data_dir / "config-snapshot.json"

    @property
    def directory_file(self) -> Path:
        """Where the last-known-good model aliases and default lists are kept."""
        return self.snapshot_file.with_name("model-directory.json")

    @property
    def tokens(self) -> frozenset[str]:
        """The accepted bearer tokens."""
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())
