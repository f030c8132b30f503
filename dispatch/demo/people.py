"""Residents (老人档案) as a register would hold them, with their families' numbers.

Every choice comes from the build's random source in a fixed order, so the
same seed gives the same people; only dates are taken relative to `today`,
which keeps every resident between 60 and 100 whenever the demo is built.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from dispatch.demo.geography import Community
from dispatch.demo.health import Health, health_for
from dispatch.demo.names import elder_name, mongolian_name, surname, younger_name
from dispatch.demo.numbering import Numbering

MIN_AGE, MAX_AGE = 60, 100
_AGES = tuple(range(MIN_AGE, MAX_AGE + 1))
# A care register leans old: the decline is gentler than the census pyramid.
_AGE_ODDS = tuple(accumulate(math.exp(-(age - MIN_AGE) / 15) for age in _AGES))

LIVING_SITUATIONS: tuple[tuple[str, int], ...] = (("alone", 35), ("empty_nest", 40), ("with_family", 25))
_CONTACT_COUNTS = ((1, 2, 3), (25, 45, 30))
_OTHER_CONTACTS = ("邻居", "侄子", "外甥女", "社区网格员")


@dataclass(frozen=True)
class Contact:
    name: str
    relation: str
    phone_e164: str


@dataclass(frozen=True)
class ResidentDraft:
    id_number: str
    name: str
    sex: str
    birth_date: dt.date
    age: int
    address: str
    community: Community
    lat: float
    lon: float
    living_situation: str
    language: str
    health: Health
    subsidy_programme: str | None
    monthly_allowance_fen: int | None
    phones: tuple[tuple[str, str], ...]  # (e164, 'mobile' | 'landline'), in the order to ring them
    contacts: tuple[Contact, ...]


def years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def _birth_date(rng: random.Random, age: int, today: dt.date) -> dt.date:
    latest = years_before(today, age)
    earliest = years_before(today, age + 1) + dt.timedelta(days=1)
    return earliest + dt.timedelta(days=rng.randrange((latest - earliest).days + 1))


def _address(rng: random.Random, place: Community) -> str:
    prefix = f"{place.district.name}{place.street.name}{place.name}"
    if place.village:
        return f"{prefix}{rng.randint(1, 8)}组{rng.randint(1, 120)}号"
    # Most older housing is six-storey walk-ups: floor 1-6, two to four flats a landing.
    return f"{prefix}{rng.randint(1, 36)}号楼{rng.randint(1, 6)}单元{rng.randint(1, 6)}0{rng.randint(1, 4)}室"


def _phones(rng: random.Random, numbering: Numbering, age: int, urban: bool) -> tuple[tuple[str, str], ...]:
    has_mobile = rng.random() < 0.92 - max(age - 75, 0) * 0.02
    has_landline = rng.random() < 0.25 + max(age - 70, 0) * 0.015
    if not (has_mobile or has_landline):
        has_landline, has_mobile = urban, not urban
    phones: list[tuple[str, str]] = []
    if has_mobile:
        phones.append((numbering.mobile(), "mobile"))
    if has_landline:
        landline = (numbering.landline(), "landline")
        # The very old answer the phone on the wall before the one in a drawer.
        phones.insert(0 if age >= 80 else len(phones), landline)
    return tuple(phones)


def _contacts(
    rng: random.Random,
    numbering: Numbering,
    *,
    sex: str,
    family: str,
    mongolian: bool,
    living: str,
) -> tuple[Contact, ...]:
    other_sex = "F" if sex == "M" else "M"
    spouse_family = surname(rng)
    children_family = family if sex == "M" else spouse_family

    def child(relation: str, child_sex: str) -> tuple[str, str]:
        if mongolian and rng.random() < 0.5:
            return mongolian_name(rng, child_sex), relation
        return younger_name(rng, child_sex, children_family), relation

    people: list[tuple[str, str]] = []
    if living == "empty_nest":
        spouse = mongolian_name(rng, other_sex) if mongolian else elder_name(rng, other_sex, spouse_family)
        people.append((spouse, "老伴"))
    if living == "with_family" and rng.random() < 0.3:
        people.append((younger_name(rng, "F", surname(rng)), "儿媳"))
    for _ in range(rng.randint(1, 3)):
        child_sex = rng.choice("MF")
        people.append(child("儿子" if child_sex == "M" else "女儿", child_sex))
    relation = rng.choice(_OTHER_CONTACTS)
    helper_sex = "M" if relation == "侄子" else "F" if relation == "外甥女" else rng.choice("MF")
    people.append((younger_name(rng, helper_sex, surname(rng)), relation))

    count = rng.choices(*_CONTACT_COUNTS)[0]
    return tuple(Contact(name, relation, numbering.mobile()) for name, relation in people[:count])


def _subsidy(rng: random.Random, age: int, health: Health) -> tuple[str | None, int | None]:
    if health.disabled and rng.random() < 0.7:
        return "SHINENG", None
    if rng.random() < 0.07:
        return "DIBAO", None
    if age >= 80 and rng.random() < 0.8:
        # Hohhot pays the oldest more than the programme's standard.
        override = 50000 if age >= 100 else 20000 if age >= 90 else None
        return "GAOLING", override
    return None, None


def make_residents(
    rng: random.Random,
    numbering: Numbering,
    places: Sequence[Community],
    count: int,
    today: dt.date,
) -> list[ResidentDraft]:
    # Villages are small and many of their old people have moved to town.
    weights = [rng.uniform(0.6, 1.4) * (0.35 if p.village else 1.0) for p in places]
    homes = rng.choices(places, weights, k=count)
    situations = [s for s, _ in LIVING_SITUATIONS]
    situation_weights = [w for _, w in LIVING_SITUATIONS]

    residents: list[ResidentDraft] = []
    for place in homes:
        age = rng.choices(_AGES, cum_weights=_AGE_ODDS)[0]
        sex = "F" if rng.random() < 0.52 + (age - MIN_AGE) * 0.005 else "M"
        birth = _birth_date(rng, age, today)
        mongolian = rng.random() < (0.09 if place.district.urban else 0.12)
        speaks_mongolian = mongolian and rng.random() < 0.45
        family = surname(rng, hui_quarter=place.district.name == "回民区")
        name = mongolian_name(rng, sex) if mongolian else elder_name(rng, sex, family)
        living = rng.choices(situations, situation_weights)[0]
        health = health_for(rng, age, mongolian_speaker=speaks_mongolian)
        programme, allowance = _subsidy(rng, age, health)
        spread = 0.01 if place.village else 0.0025
        residents.append(
            ResidentDraft(
                id_number=numbering.id_number(place.district.code, birth, sex),
                name=name,
                sex=sex,
                birth_date=birth,
                age=age,
                address=_address(rng, place),
                community=place,
                lat=round(place.lat + rng.uniform(-spread, spread), 6),
                lon=round(place.lon + rng.uniform(-spread, spread), 6),
                living_situation=living,
                language="mn" if speaks_mongolian else "zh",
                health=health,
                subsidy_programme=programme,
                monthly_allowance_fen=allowance,
                phones=_phones(rng, numbering, age, not place.village),
                contacts=_contacts(
                    rng, numbering, sex=sex, family=family, mongolian=mongolian, living=living
                ),
            )
        )
    return residents
