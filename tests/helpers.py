"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
