"""What every part of a running Careline shares: configuration, the pool, the clock."""

from __future__ import annotations

import datetime as dt
import gc
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import CollectorRegistry

from dispatch.config import Config
from dispatch.events import EventBus
from dispatch.phones import PhoneBook


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def freeze_startup_heap() -> None:
    """Once started, leave what start-up built out of the garbage collector's later passes.

    Modules, routes, configuration, pools and connections live as long as the process, yet every
    full collection walks them all again (one costs tens of ms, a pause in reading Asterisk's
    events). What start-up left as garbage is collected first, so nothing is kept that would
    have been freed.
    """
    gc.collect()
    gc.freeze()


@dataclass
class Runtime:
    config: Config
    pool: asyncpg.Pool
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], dt.datetime] = utc_now
    bus: EventBus = field(default_factory=EventBus)
    # signs job-page links and session cookies; random per process when not configured
    secret: bytes = b""

    def __post_init__(self) -> None:
        if not self.secret:
            configured = self.config.security.secret_key
            self.secret = configured.encode() if configured else secrets.token_bytes(32)

    # Built once: every caller-id lookup and every import row reads it, and the config does not change.
    @cached_property
    def phones(self) -> PhoneBook:
        return PhoneBook(self.config.locale.phone_region, self.config.locale.home_area_code)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.locale.timezone)
