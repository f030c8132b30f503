"""Users, their roles, passwords (argon2id) and API bearer tokens.

A token is shown once when it is made and stored only as its SHA-256: tokens
are 256 random bits, so a fast hash is enough and lets every request find its
user with one indexed lookup. Passwords are people-chosen and get argon2id.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dispatch.database import Conn

_hasher = PasswordHasher()
TOKEN_PREFIX = "cl_"


class Role(StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class UserError(ValueError):
    """A user cannot be made or changed as asked."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role

    def may(self, role: Role) -> bool:
        """Roles are ranked: an admin may do what a supervisor may, and so on down."""
        order = [Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN]
        return order.index(self.role) >= order.index(role)


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"], username=row["username"], display_name=row["display_name"], role=Role(row["role"])
    )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_user(
    conn: Conn,
    username: str,
    role: Role,
    *,
    display_name: str = "",
    password: str | None = None,
) -> User:
    username = username.strip()
    if not username or len(username) > 64 or any(ch.isspace() for ch in username):
        raise UserError("a user name is 1-64 characters without spaces")
    try:
        row = await conn.fetchrow(
            """INSERT INTO users (username, display_name, role, password_hash)
               VALUES ($1, $2, $3, $4) RETURNING id, username, display_name, role""",
            username,
            display_name or username,
            role.value,
            hash_password(password) if password else None,
        )
    except asyncpg.UniqueViolationError:
        raise UserError(f"user {username!r} already exists") from None
    assert row is not None
    return _user(row)


async def ensure_user(
    conn: Conn,
    username: str,
    role: Role,
    *,
    display_name: str,
    password: str,
) -> User:
    """Create the user or reset its role and password (used for the demo accounts)."""
    row = await conn.fetchrow(
        """INSERT INTO users (username, display_name, role, password_hash) VALUES ($1, $2, $3, $4)
           ON CONFLICT (username) DO UPDATE
               SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash, active = true
           RETURNING id, username, display_name, role""",
        username,
        display_name,
        role.value,
        hash_password(password),
    )
    assert row is not None
    return _user(row)


async def issue_token(conn: Conn, user_id: int, label: str = "") -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_tokens (user_id, token_sha256, label) VALUES ($1, $2, $3)",
        user_id,
        _token_digest(token),
        label,
    )
    return token


async def user_for_token(conn: Conn, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = await conn.fetchrow(
        """UPDATE api_tokens t SET last_used_at = now()
           FROM users u
           WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND u.id = t.user_id AND u.active
           RETURNING u.id, u.username, u.display_name, u.role""",
        _token_digest(token),
    )
    return _user(row) if row else None


async def user_for_password(conn: Conn, username: str, password: str) -> User | None:
    row = await conn.fetchrow(
        "SELECT id, username, display_name, role, password_hash FROM users WHERE username = $1 AND active",
        username,
    )
    if row is None or not password_matches(row["password_hash"], password):
        return None
    return _user(row)
