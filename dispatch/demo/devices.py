"""In-home units (电子保姆), pendants and smoke sensors, and who has them.

The district installs home units for people living alone first, the oldest
among them first; anything left over goes to empty nests, then to families.
Units beyond the number of residents stay in stock, unassigned. Heartbeats
and battery levels are set relative to `now` so the floor looks alive: most
units were heard from within their interval, a few are overdue.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass

from dispatch.demo.numbering import Numbering
from dispatch.demo.people import ResidentDraft

HOME_UNIT, PENDANT, SMOKE = "home_unit", "pendant", "smoke"

_PRIORITY = {"alone": 0, "empty_nest": 1, "with_family": 2}
_HEARTBEATS = ((86400, 43200, 3600), (60, 25, 15))
_FALSE_ALARMS = ((0, 1, 2, 3, 6), (70, 15, 8, 5, 2))


@dataclass(frozen=True)
class DeviceDraft:
    serial: str
    kind: str
    resident: int | None  # index into the residents list
    caller_e164: str | None
    dc09_account: str | None
    cloud_id: str | None
    heartbeat_interval_s: int
    last_seen_at: dt.datetime | None
    battery_percent: int | None
    status: str
    false_alarms: int
    installed_at: dt.datetime


def _heard(rng: random.Random, interval: int, now: dt.datetime) -> tuple[dt.datetime, str]:
    roll = rng.random()
    if roll < 0.02:
        return now - dt.timedelta(days=rng.uniform(14, 60)), "maintenance"
    if roll < 0.06:
        return now - dt.timedelta(seconds=rng.uniform(2 * interval, 2 * interval + 5 * 86400)), "active"
    return now - dt.timedelta(seconds=rng.uniform(0, interval)), "active"


def _battery(rng: random.Random, mains_powered: bool) -> int:
    if rng.random() < 0.05:
        return rng.randint(5, 25)
    return rng.randint(70, 100) if mains_powered else rng.randint(30, 100)


def make_devices(
    rng: random.Random,
    numbering: Numbering,
    residents: Sequence[ResidentDraft],
    home_units: int,
    now: dt.datetime,
) -> list[DeviceDraft]:
    order = sorted(
        range(len(residents)),
        key=lambda i: (_PRIORITY[residents[i].living_situation], -residents[i].age + rng.uniform(0, 12)),
    )
    owners: list[int | None] = [*order[:home_units]]
    owners += [None] * (home_units - len(owners))

    dc09_accounts = rng.sample(range(0x100000, 0x1000000), home_units)
    devices: list[DeviceDraft] = []
    extras: list[tuple[str, int]] = []
    for number, owner in enumerate(owners, start=1):
        interval = rng.choices(*_HEARTBEATS)[0]
        seen, status = _heard(rng, interval, now)
        devices.append(
            DeviceDraft(
                serial=f"GW-{100000 + number}",
                kind=HOME_UNIT,
                resident=owner,
                caller_e164=numbering.mobile(),
                dc09_account=f"{dc09_accounts[number - 1]:06X}",
                # The newer units also report through the vendor's cloud.
                cloud_id=f"hx{rng.getrandbits(40):010x}{number:06d}" if rng.random() < 0.35 else None,
                heartbeat_interval_s=interval,
                last_seen_at=seen if owner is not None else None,
                battery_percent=_battery(rng, mains_powered=True),
                # A unit in stock is not in service: "active" would make it a missed heartbeat.
                status=status if owner is not None else "maintenance",
                false_alarms=rng.choices(*_FALSE_ALARMS)[0] if owner is not None else 0,
                installed_at=now - dt.timedelta(days=rng.uniform(20, 1800)),
            )
        )
        if owner is None:
            continue
        frail = residents[owner].health.mobility != "行动自如"
        if rng.random() < (0.35 if frail else 0.1):
            extras.append((PENDANT, owner))
        if rng.random() < 0.12:
            extras.append((SMOKE, owner))

    for number, (kind, owner) in enumerate(extras, start=1):
        seen, status = _heard(rng, 86400, now)
        smoke = kind == SMOKE
        devices.append(
            DeviceDraft(
                serial=f"{'YG' if smoke else 'PD'}-{200000 + number}",
                kind=kind,
                resident=owner,
                # A pendant speaks through its home unit; NB-IoT smoke sensors report to their cloud.
                caller_e164=None,
                dc09_account=None,
                cloud_id=f"nb{rng.getrandbits(40):010x}{number:06d}" if smoke else None,
                heartbeat_interval_s=86400 if smoke else 43200,
                last_seen_at=seen,
                battery_percent=_battery(rng, mains_powered=False),
                status=status,
                false_alarms=rng.choices(*_FALSE_ALARMS)[0],
                installed_at=now - dt.timedelta(days=rng.uniform(20, 900)),
            )
        )
    return devices
