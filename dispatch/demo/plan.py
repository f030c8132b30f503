"""The whole demo floor as plain data, before any of it touches the database.

One `random.Random(seed)` feeds every generator in a fixed order; changing
that order changes every later value, so new kinds of data go at the end.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from dispatch.config import DemoConfig
from dispatch.demo.devices import DeviceDraft, make_devices
from dispatch.demo.geography import Community, communities
from dispatch.demo.numbering import Numbering
from dispatch.demo.people import ResidentDraft, make_residents
from dispatch.demo.providers import ProviderDraft, make_providers
from dispatch.demo.teams import TeamDraft, make_teams


@dataclass(frozen=True)
class FloorPlan:
    seed: int
    communities: tuple[Community, ...]
    residents: tuple[ResidentDraft, ...]
    devices: tuple[DeviceDraft, ...]
    providers: tuple[ProviderDraft, ...]
    teams: tuple[TeamDraft, ...]


def plan_floor(seed: int, sizes: DemoConfig, now: dt.datetime, today: dt.date) -> FloorPlan:
    rng = random.Random(seed)
    numbering = Numbering(rng)
    places = communities()
    residents = make_residents(rng, numbering, places, sizes.residents, today)
    devices = make_devices(rng, numbering, residents, sizes.devices, now)
    providers = make_providers(rng, numbering, places, sizes.providers)
    teams = make_teams(rng, numbering, places, sizes.teams)
    return FloorPlan(
        seed=seed,
        communities=tuple(places),
        residents=tuple(residents),
        devices=tuple(devices),
        providers=tuple(providers),
        teams=tuple(teams),
    )
