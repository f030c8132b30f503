"""Device-cloud integrations and their HMAC-signed requests.

`careline integration add NAME` makes a public key (`ck_…`) and a secret, shown
once. The secret has to be recoverable to check a signature, so it cannot be
hashed like an API token; it is sealed with AES-GCM under a key derived (HKDF)
from CARELINE_SECRET_KEY, with the integration key as associated data, so a
database dump alone does not give a forger the secrets. Adding one therefore
needs CARELINE_SECRET_KEY set, and the same key later to verify.

A request carries `X-Careline-Key`, `X-Careline-Timestamp` (Unix seconds) and
`X-Careline-Signature` = hex HMAC-SHA256(secret, timestamp + "." + raw body).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dispatch.database import Conn

KEY_PREFIX = "ck_"
SECRET_PREFIX = "cs_"
HEADER_KEY = "X-Careline-Key"
HEADER_TIMESTAMP = "X-Careline-Timestamp"
HEADER_SIGNATURE = "X-Careline-Signature"


class IntegrationError(ValueError):
    """An integration cannot be made as asked."""


class SignatureRefused(Exception):
    """A request that does not prove it comes from an integration; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Integration:
    id: int
    name: str
    key: str


def _sealing_key(secret_key: str) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"careline-12349", info=b"integration secrets"
    ).derive(secret_key.encode())
    return AESGCM(derived)


def seal(secret_key: str, integration_key: str, secret: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + _sealing_key(secret_key).encrypt(nonce, secret.encode(), integration_key.encode())


def unseal(secret_key: str, integration_key: str, sealed: bytes) -> str:
    return _sealing_key(secret_key).decrypt(sealed[:12], sealed[12:], integration_key.encode()).decode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature a sender puts in X-Careline-Signature."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


async def add_integration(conn: Conn, name: str, secret_key: str) -> tuple[Integration, str]:
    """A new integration and its secret (returned once, stored only sealed)."""
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise IntegrationError("an integration name is 1-64 characters without spaces")
    if not secret_key:
        raise IntegrationError("set CARELINE_SECRET_KEY first: integration secrets are stored sealed with it")
    key = KEY_PREFIX + secrets.token_urlsafe(18)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    try:
        row = await conn.fetchrow(
            "INSERT INTO integrations (name, key, secret_sealed) VALUES ($1, $2, $3) RETURNING id",
            name,
            key,
            seal(secret_key, key, secret),
        )
    except asyncpg.UniqueViolationError:
        raise IntegrationError(f"integration {name!r} already exists") from None
    assert row is not None
    return Integration(int(row["id"]), name, key), secret


# How long a verified integration's secret is kept in memory. A device cloud posting hundreds of
# alarms a second is then checked without a database round trip and a key derivation for each
# (under a surge those were a third of an alarm's time), and an integration revoked in the
# database is refused within this time.
KNOWN_FOR_SECONDS = 10.0


@dataclass(frozen=True)
class _Known:
    integration: Integration
    secret: str
    until: float


class IntegrationKeys:
    """Integrations by key with their unsealed secrets, read again after KNOWN_FOR_SECONDS.
    An unknown or revoked key is never remembered: it is looked up every time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        secret_key: str,
        *,
        ttl: float = KNOWN_FOR_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.secret_key = secret_key
        self.ttl = ttl
        self.clock = clock
        self._known: dict[str, _Known] = {}

    async def secret_for(self, key: str) -> tuple[Integration, str]:
        known = self._known.get(key)
        if known is not None and known.until > self.clock():
            return known.integration, known.secret
        self._known.pop(key, None)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id, name, key, secret_sealed FROM integrations WHERE key = $1 AND revoked_at IS NULL",
                key,
            )
        if row is None:
            raise SignatureRefused(HEADER_KEY, "no such integration")
        if not self.secret_key:
            raise SignatureRefused(
                HEADER_KEY, "CARELINE_SECRET_KEY is not set here, so no signature can be checked"
            )
        try:
            secret = unseal(self.secret_key, key, bytes(row["secret_sealed"]))
        except InvalidTag:
            raise SignatureRefused(
                HEADER_KEY, "this integration's secret cannot be read (was CARELINE_SECRET_KEY changed?)"
            ) from None
        integration = Integration(int(row["id"]), row["name"], row["key"])
        self._known[key] = _Known(integration, secret, self.clock() + self.ttl)
        return integration, secret


async def verify_request(
    keys: IntegrationKeys,
    *,
    key: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: dt.datetime,
    window_seconds: float,
) -> Integration:
    """The integration that signed this request; SignatureRefused naming the header otherwise."""
    for field, value in ((HEADER_KEY, key), (HEADER_TIMESTAMP, timestamp), (HEADER_SIGNATURE, signature)):
        if not value:
            raise SignatureRefused(field, f"the {field} header is required")
    assert key is not None
    assert timestamp is not None
    assert signature is not None
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureRefused(HEADER_TIMESTAMP, "expected Unix seconds")
    if abs(now.timestamp() - int(timestamp)) > window_seconds:
        raise SignatureRefused(HEADER_TIMESTAMP, f"more than {window_seconds:g} s from our clock")
    if not key.isascii() or len(key) > 100:
        raise SignatureRefused(HEADER_KEY, "not a key")
    integration, secret = await keys.secret_for(key)
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("ascii", "replace")):
        raise SignatureRefused(HEADER_SIGNATURE, "the signature does not match")
    return integration
