"""Emergency teams (应急服务队): where they stand, what they cover, when they are on duty.

Roster encoding (the `team_roster` table): one row per weekday (1 = Monday …
7 = Sunday) and shift. `ends <= starts` means the shift runs past midnight,
so a shift from 00:00 to 00:00 is the whole day: a 24/7 team has seven such
rows. A night shift is 20:00-08:00 on the day it starts.

The twelve-team plan gives every county its own round-the-clock team and
every city district at least two; with fewer teams, a district left without
one is added to the nearest team's coverage, so no district is ever uncovered.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from dispatch.demo.geography import DISTRICTS, Community, District, district_named
from dispatch.demo.names import surname, younger_name
from dispatch.demo.numbering import Numbering

MIDNIGHT = dt.time(0, 0)
Shift = tuple[int, dt.time, dt.time]

ALL_DAY: tuple[Shift, ...] = tuple((day, MIDNIGHT, MIDNIGHT) for day in range(1, 8))
DAY: tuple[Shift, ...] = tuple((day, dt.time(8), dt.time(20)) for day in range(1, 8))
NIGHT: tuple[Shift, ...] = tuple((day, dt.time(20), dt.time(8)) for day in range(1, 8))
WEEKDAY_DAY_WEEKEND_ALL: tuple[Shift, ...] = (
    *((day, dt.time(8), dt.time(18)) for day in range(1, 6)),
    *((day, MIDNIGHT, MIDNIGHT) for day in (6, 7)),
)

# (home district, districts covered, roster)
PLAN: tuple[tuple[str, tuple[str, ...], tuple[Shift, ...]], ...] = (
    ("新城区", ("新城区", "赛罕区"), ALL_DAY),
    ("回民区", ("回民区", "新城区"), ALL_DAY),
    ("玉泉区", ("玉泉区", "回民区"), ALL_DAY),
    ("赛罕区", ("赛罕区", "玉泉区"), ALL_DAY),
    ("土默特左旗", ("土默特左旗",), ALL_DAY),
    ("托克托县", ("托克托县",), ALL_DAY),
    ("和林格尔县", ("和林格尔县",), ALL_DAY),
    ("清水河县", ("清水河县",), ALL_DAY),
    ("武川县", ("武川县",), ALL_DAY),
    ("新城区", ("新城区",), DAY),
    ("赛罕区", ("赛罕区",), NIGHT),
    ("回民区", ("回民区", "玉泉区"), WEEKDAY_DAY_WEEKEND_ALL),
)
_URBAN = ("新城区", "回民区", "玉泉区", "赛罕区")
_ORDINALS = "一二三四五六七八九十"


@dataclass(frozen=True)
class Member:
    name: str
    phone_e164: str
    role: str


@dataclass(frozen=True)
class TeamDraft:
    code: str
    name: str
    phone_e164: str
    base_lat: float
    base_lon: float
    address: str
    districts: tuple[District, ...]
    members: tuple[Member, ...]
    roster: tuple[Shift, ...]


def ordinal(number: int) -> str:
    if number <= 10:
        return _ORDINALS[number - 1]
    tens, ones = divmod(number, 10)
    return (_ORDINALS[tens - 1] if tens > 1 else "") + "十" + (_ORDINALS[ones - 1] if ones else "")


def _plan(count: int) -> list[tuple[District, list[District], tuple[Shift, ...]]]:
    plan = [
        (district_named(home), [district_named(c) for c in covered], roster)
        for home, covered, roster in PLAN[:count]
    ]
    for extra in range(count - len(plan)):
        home = district_named(_URBAN[extra % len(_URBAN)])
        plan.append((home, [home], ALL_DAY))
    covered = {d.code for _, districts, _ in plan for d in districts}
    for district in DISTRICTS:
        if plan and district.code not in covered:
            nearest = min(plan, key=lambda entry: math.dist(entry[0].centre, district.centre))
            nearest[1].append(district)
    return plan


def make_teams(
    rng: random.Random,
    numbering: Numbering,
    places: Sequence[Community],
    count: int,
) -> list[TeamDraft]:
    teams: list[TeamDraft] = []
    numbers: dict[str, int] = {}
    for home, covered, roster in _plan(count):
        numbers[home.code] = numbers.get(home.code, 0) + 1
        number = numbers[home.code]
        # Teams stand by in the district's core, where the calls come from.
        core = [p for p in places if p.district.code == home.code and p.street == home.streets[0]]
        station = rng.choice([p for p in core if not p.village] or core)
        size = rng.randint(3, 6)
        members = tuple(
            Member(
                younger_name(rng, "M" if rng.random() < 0.8 else "F", surname(rng)),
                numbering.mobile(),
                "leader" if index == 0 else "member",
            )
            for index in range(size)
        )
        teams.append(
            TeamDraft(
                code=f"{home.abbr}{number:02d}",
                name=f"{home.name}应急服务{ordinal(number)}队",
                phone_e164=numbering.mobile(),
                base_lat=round(station.lat + rng.uniform(-0.002, 0.002), 6),
                base_lon=round(station.lon + rng.uniform(-0.003, 0.003), 6),
                address=f"{home.name}{station.street.name}{station.name}应急服务站",
                districts=tuple(covered),
                members=members,
                roster=roster,
            )
        )
    return teams
