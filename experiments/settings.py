"""The one settings object of abgate, read from ``ABGATE_*`` environment variables.

Every field is documented in docs/operators.md. Packages receive this object (or values
from it) through constructors; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    log_sink: Literal["archive", "cloud-logging"] = Field(
        "archive",
        description="Where exposures and outcomes go: the local archive, or Cloud Logging's API",
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

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(
        1, ge=1, description="Gateway processes sharing the port (one per vCPU); 1: no supervisor"
    )
    api_tokens: str = Field("", description="Comma-separated bearer tokens; empty: no auth")
    max_body_bytes: int = Field(64 * 1024, ge=1)

    # Local state
    data_dir: Path = Field(
        Path(".abgate"), description="Embedded servers' data and the demo's files"
    )

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
