"""API keys in Postgres: create, list, revoke, with every change audited.

A key is ``abg_`` followed by 43 URL-safe characters (256 random bits); only its SHA-256 is
stored. A plain hash is enough because the secret is uniformly random: there is nothing to
guess, so a keyed hash (HMAC with a server secret) would add a secret to distribute to every
replica and rotate, and protect nothing more. Every change is written to ``api_key_audit`` and
NOTIFYs ``abgate_config`` with ``<schema>:keys`` in the same transaction, so gateways reload
their keys as soon as it commits (gateway/keys.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from experiments.errors import KeyChangeRefused
from experiments.store.experiment_store import NOTIFY_CHANNEL

__all__ = [
    "KEYS_PAYLOAD_SUFFIX",
    "KEY_PREFIX",
    "ApiKey",
    "KeyAudit",
    "PostgresKeyStore",
    "key_digest",
]

KEY_PREFIX = "abg_"
KEYS_PAYLOAD_SUFFIX = ":keys"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RATE = re.compile(r"^\d+(\.\d+)?/(s|m|h)$")


def key_digest(secret: str) -> bytes:
    """SHA-256 of a key, as stored and as gateways compute it from the bearer token."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never its secret)."""

    id: int
    name: str
    digest: bytes
    prefix: str
    surfaces: tuple[str, ...]
    rate: str | None
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


@dataclass(frozen=True, slots=True)
class KeyAudit:
    """One audited key change."""

    at: datetime
    actor: str
    action: str
    key_name: str
    details: dict[str, object]
    host: str
    client: str | None


_COLUMNS = (
    "id, name, digest, prefix, surfaces, rate, created_at, created_by, last_used_at,"
    " revoked_at, revoked_by"
)


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        row["id"],
        row["name"],
        bytes(row["digest"]),
        row["prefix"],
        tuple(row["surfaces"]),
        row["rate"],
        row["created_at"],
        row["created_by"],
        row["last_used_at"],
        row["revoked_at"],
        row["revoked_by"],
    )


class PostgresKeyStore:
    """API keys on one schema's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        name: str,
        surfaces: list[str],
        rate: str | None,
        *,
        actor: str,
        host: str,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once, never stored)."""
        if not _NAME.match(name):
            raise KeyChangeRefused(f"key name '{name}' must match {_NAME.pattern}")
        if rate is not None and not _RATE.match(rate):
            raise KeyChangeRefused(f"rate '{rate}' must look like 500/s, 3000/m or 10000/h")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO api_keys (name, digest, prefix, surfaces, rate, created_by)"
                    f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
                    name,
                    key_digest(secret),
                    secret[:8],
                    sorted(set(surfaces)),
                    rate,
                    actor,
                )
            except asyncpg.UniqueViolationError:
                raise KeyChangeRefused(
                    f"a key named '{name}' exists (revoked keys keep their name)"
                ) from None
            await _audit(conn, actor, "create", name, {"surfaces": surfaces, "rate": rate}, host)
        return _key(row), secret

    async def revoke(self, name: str, *, actor: str, host: str) -> ApiKey:
        """Revoke a key now; gateways refuse it within a second of the commit."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE api_keys SET revoked_at = now(), revoked_by = $2"
                f" WHERE name = $1 AND revoked_at IS NULL RETURNING {_COLUMNS}",
                name,
                actor,
            )
            if row is None:
                raise KeyChangeRefused(f"no active key named '{name}'")
            await _audit(conn, actor, "revoke", name, {}, host)
        return _key(row)

    async def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Keys by name."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE $1 OR revoked_at IS NULL ORDER BY name",
            include_revoked,
        )
        return [_key(r) for r in rows]

    async def audit(self, name: str | None = None) -> list[KeyAudit]:
        """Audited changes, oldest first (of one key, or all)."""
        rows = await self.pool.fetch(
            "SELECT at, actor, action, key_name, details, host, client FROM api_key_audit"
            " WHERE $1::text IS NULL OR key_name = $1 ORDER BY id",
            name,
        )
        return [
            KeyAudit(
                r["at"],
                r["actor"],
                r["action"],
                r["key_name"],
                json.loads(r["details"]),
                r["host"],
                r["client"],
            )
            for r in rows
        ]

    async def touch(self, last_used: dict[int, datetime]) -> None:
        """Record when keys were last used (gateways batch this)."""
        if last_used:
            await self.pool.executemany(
                "UPDATE api_keys SET last_used_at = greatest(last_used_at, $2) WHERE id = $1",
                list(last_used.items()),
            )


async def _audit(
    conn: asyncpg.Connection,
    actor: str,
    action: str,
    name: str,
    details: dict[str, object],
    host: str,
) -> None:
    await conn.execute(
        "INSERT INTO api_key_audit (actor, action, key_name, details, host, client)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, host(inet_client_addr()))",
        actor,
        action,
        name,
        json.dumps(details),
        host,
    )
    await conn.execute(
        "SELECT pg_notify($1, current_schema() || $2)", NOTIFY_CHANNEL, KEYS_PAYLOAD_SUFFIX
    )
