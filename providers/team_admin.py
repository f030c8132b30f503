"""Creating, listing and editing emergency teams by hand (console, API), each change an event row.

Like providers, a team goes through the registry's own `upsert_team`, keyed on
its code; an edit that changes nothing writes nothing. Events name the fields
that changed, never their values (the duty phone and members' phones are
among them). Suspending and reactivating are in `providers.suspension`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event
from dispatch.geography import PlaceError, resolve_district
from dispatch.validation import Checker
from providers.teams import (
    TEAM_COLUMNS,
    EmergencyTeam,
    TeamCard,
    TeamInput,
    TeamStatus,
    get_team,
    team_from_row,
    upsert_team,
)


@dataclass(frozen=True)
class TeamDistrict:
    id: int
    name: str


@dataclass(frozen=True)
class TeamSummary:
    team: EmergencyTeam
    districts: tuple[TeamDistrict, ...]


class TeamExists(Exception):
    def __init__(self, team_id: int) -> None:
        super().__init__(f"a team with this code exists (id {team_id})")
        self.team_id = team_id


async def check_districts(conn: Conn, refs: Sequence[str]) -> None:
    """InvalidInput (field `districts`) naming each reference that is no district."""
    checker = Checker()
    for ref in refs:
        try:
            await resolve_district(conn, ref)
        except PlaceError as exc:
            checker.fail("districts", str(exc))
    checker.done()


_DISTRICTS = """
LEFT JOIN LATERAL (
    SELECT coalesce(array_agg(d.id ORDER BY d.code), '{}') AS district_ids,
           coalesce(array_agg(d.name ORDER BY d.code), '{}') AS district_names
    FROM team_districts td JOIN districts d ON d.id = td.district_id
    WHERE td.team_id = t.id
) ds ON true
"""


async def search_teams(
    conn: Conn,
    *,
    status: TeamStatus | None = None,
    district_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[TeamSummary], int]:
    """A page of teams by code, with the districts each covers, and how many match in all."""
    where = """WHERE ($1::text IS NULL OR t.status = $1)
                 AND ($2::int IS NULL OR EXISTS (SELECT 1 FROM team_districts x
                                                 WHERE x.team_id = t.id AND x.district_id = $2))"""
    args = (status.value if status else None, district_id)
    total: int = await conn.fetchval(f"SELECT count(*) FROM emergency_teams t {where}", *args)
    rows = await conn.fetch(
        f"""SELECT {TEAM_COLUMNS}, ds.district_ids, ds.district_names
            FROM emergency_teams t {_DISTRICTS} {where}
            ORDER BY t.code LIMIT $3 OFFSET $4""",
        *args,
        limit,
        offset,
    )
    return [
        TeamSummary(
            team_from_row(r),
            tuple(TeamDistrict(i, n) for i, n in zip(r["district_ids"], r["district_names"], strict=True)),
        )
        for r in rows
    ], total


async def district_names(conn: Conn, district_ids: Sequence[int]) -> tuple[TeamDistrict, ...]:
    rows = await conn.fetch(
        "SELECT id, name FROM districts WHERE id = ANY($1::int[]) ORDER BY code", list(district_ids)
    )
    return tuple(TeamDistrict(r["id"], r["name"]) for r in rows)


async def create_team(
    conn: Conn, team: TeamInput, *, actor: str, reason: str = ""
) -> tuple[EmergencyTeam, DomainEvent]:
    """A new team, or TeamExists when its code is taken."""
    async with conn.transaction():
        # Two creates of one code at once: the second waits here, then finds the first.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"team:{team.code}")
        existing = await conn.fetchval("SELECT id FROM emergency_teams WHERE code = $1", team.code)
        if existing is not None:
            raise TeamExists(existing)
        saved, _ = await upsert_team(conn, team)
        event = await append_event(
            conn,
            subject_type="team",
            subject_id=saved.id,
            kind="team.created",
            actor=actor,
            to_state=saved.status.value,
            reason=reason,
            data={"code": saved.code, "name": saved.name},
        )
    return saved, event


async def team_for_edit(conn: Conn, team_id: int) -> TeamCard | None:
    """The stored team, its row locked until the caller's transaction ends."""
    locked = await conn.fetchval("SELECT t.id FROM emergency_teams t WHERE t.id = $1 FOR UPDATE", team_id)
    return await get_team(conn, team_id) if locked is not None else None


def changed_fields(before: TeamCard, after: TeamCard) -> list[str]:
    b, a = before.team, after.team
    pairs = {
        "name": (b.name, a.name),
        "phone": (b.phone_e164, a.phone_e164),
        "base_lat": (b.base_lat, a.base_lat),
        "base_lon": (b.base_lon, a.base_lon),
        "address": (b.address, a.address),
        "districts": (before.district_ids, after.district_ids),
        "members": (sorted(before.members), sorted(after.members)),
        "roster": (before.roster, after.roster),
    }
    return [field for field, (old, new) in pairs.items() if old != new]


async def save_team_edit(
    conn: Conn, before: TeamCard, after: TeamInput, *, actor: str, reason: str = ""
) -> tuple[EmergencyTeam, DomainEvent | None]:
    """Store `after` over `before` (from `team_for_edit`, same transaction); the event names the
    fields that changed, and is None when nothing did."""
    if (after.code, after.status) != (before.team.code, before.team.status):
        raise ValueError("an edit keeps the team's code and status")
    async with conn.transaction():
        saved, changed = await upsert_team(conn, after)
        if not changed:
            return saved, None
        stored = await get_team(conn, saved.id)
        assert stored is not None
        event = await append_event(
            conn,
            subject_type="team",
            subject_id=saved.id,
            kind="team.updated",
            actor=actor,
            reason=reason,
            data={"fields": changed_fields(before, stored)},
        )
    return saved, event
