"""Who is calling: bearer credentials checked against hashed keys, in constant time.

Credentials are never held in memory in clear: the ``Authenticator`` maps the SHA-256 digest of
each accepted secret to its ``Caller``. Presenting a token hashes it and looks the digest up, so
the time taken depends on the digest of what was sent, never on how much of a real secret it
shares; ``hmac.compare_digest`` confirms the match.

Two kinds of credential give a ``Caller``:
- ``ABGATE_API_TOKENS``: the simplest set-up; any surface, no rate limit;
- API keys from Postgres (``abgate keys``): named, scoped to surfaces, rate limited, revocable
  while the gateway runs (gateway/keys.py swaps the table with ``replace_keys``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.errors import Forbidden, RateLimited, Unauthorized
from gateway.ratelimit import TokenBucket


def digest(secret: bytes) -> bytes:
    """The stored form of a credential: SHA-256 of its bytes."""
    return hashlib.sha256(secret).digest()


@dataclass(slots=True)
class Caller:
    """An authenticated caller: a key's name, its digest, its surfaces (None: all), its bucket."""

    name: str
    digest: bytes
    surfaces: frozenset[str] | None = None
    bucket: TokenBucket | None = None
    key_id: int | None = None
    used: bool = False  # since the last flush of last_used_at (gateway/keys.py)

    def check_surface(self, surface: str) -> None:
        """Raise Forbidden unless this caller may use ``surface``."""
        if self.surfaces is not None and surface not in self.surfaces:
            raise Forbidden(f"key '{self.name}' may not use surface '{surface}'")

    def check_rate(self, now: float) -> None:
        """Raise RateLimited when this caller's bucket is empty."""
        bucket = self.bucket
        if bucket is not None:
            wait = bucket.take(now)
            if wait > 0.0:
                raise RateLimited(
                    f"key '{self.name}' is over its rate of {bucket.describe()}",
                    retry_after=max(1, int(wait + 0.999)),
                )


class Authenticator:
    """Bearer credentials of one gateway process."""

    def __init__(
        self,
        tokens: frozenset[str],
        *,
        keys_enabled: bool = False,
        on_rate_limited: Callable[[str], object] = lambda name: None,
    ) -> None:
        self.required = bool(tokens) or keys_enabled
        self.on_rate_limited = on_rate_limited
        self._tokens = {
            d: Caller("ABGATE_API_TOKENS", d) for d in (digest(t.encode()) for t in tokens)
        }
        self._callers: dict[bytes, Caller] = dict(self._tokens)

    def replace_keys(self, keys: Mapping[bytes, Caller]) -> None:
        """Serve ``keys`` (digest -> caller) from now on, beside the static tokens."""
        self._callers = {**keys, **self._tokens}

    def authenticate(self, header: bytes | None) -> Caller | None:
        """The caller of an ``Authorization`` header value; None when auth is off."""
        if not self.required:
            return None
        scheme, _, token = (header or b"").partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise Unauthorized("send 'Authorization: Bearer <key>'")
        presented = digest(token)
        caller = self._callers.get(presented)
        # The dict finds the digest; compare_digest makes the final comparison constant-time.
        if caller is None or not hmac.compare_digest(presented, caller.digest):
            raise Unauthorized("the key is unknown or revoked", error="invalid_token")
        caller.used = True
        return caller

    def admit(self, header: bytes | None, now: float) -> Caller | None:
        """The caller of an ``Authorization`` header value, within its rate limit (None when
        auth is off). A refusal for the rate is reported to ``on_rate_limited`` by key name."""
        caller = self.authenticate(header)
        if caller is not None:
            try:
                caller.check_rate(now)
            except RateLimited:
                self.on_rate_limited(caller.name)
                raise
        return caller

    def __len__(self) -> int:
        return len(self._callers)
