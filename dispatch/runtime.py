"""What every part of a running Careline shares: configuration, the pool, the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import CollectorRegistry

from dispatch.config import Config
from dispatch.phones import PhoneBook


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Runtime:
    config: Config
    pool: asyncpg.Pool
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], dt.datetime] = utc_now

    @property
    def phones(self) -> PhoneBook:
        return PhoneBook(self.config.locale.phone_region, self.config.locale.home_area_code)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.locale.timezone)
