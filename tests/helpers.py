"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt
import socket
from urllib.parse import urlsplit, urlunsplit

from dispatch.deadlines import DeadlineRunner
from dispatch.service import Service


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeClock:
    """A clock a test moves on purpose: `runtime.clock` for deadlines and transitions."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


async def stop_deadlines(service: Service) -> None:
    """For a world built at fixed past dates beside a live service: its runner fires deadlines on the
    wall clock, so every offer, escalation step and reminder of that world would fire the moment it
    is written and move what the test reads. The service's own stop is then a second stop (a no-op)."""
    await next(c for c in service.started if isinstance(c, DeadlineRunner)).stop()
