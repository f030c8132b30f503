"""Emergency teams (应急服务队): where they are based, which districts they cover, who is on the team
and when it is on duty.

The roster is weekly and in local time: a slot whose end is not after its start
runs past midnight into the next day (Friday 20:00-08:00 covers Saturday 07:00).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import asyncpg

from dispatch.database import Conn
from dispatch.geography import PlaceError, resolve_district
from dispatch.validation import Checker, InvalidInput


class TeamStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    INACTIVE = "inactive"


class MemberRole(StrEnum):
    LEADER = "leader"
    MEMBER = "member"


@dataclass(frozen=True)
class EmergencyTeam:
    id: int
    code: str
    name: str
    phone_e164: str = field(repr=False)
    base_lat: float
    base_lon: float
    address: str
    status: TeamStatus
    created_at: dt.datetime


@dataclass(frozen=True, order=True)
class TeamMember:
    name: str
    phone_e164: str = field(repr=False)
    role: MemberRole = MemberRole.MEMBER


@dataclass(frozen=True, order=True)
class RosterSlot:
    weekday: int  # 1 = Monday … 7 = Sunday
    starts: dt.time
    ends: dt.time

    def covers(self, local: dt.datetime) -> bool:
        """Whether this slot is on at `local` (a time in the hotline's zone)."""
        weekday, now = local.isoweekday(), local.time()
        if self.starts < self.ends:
            return weekday == self.weekday and self.starts <= now < self.ends
        next_day = self.weekday % 7 + 1
        return (weekday == self.weekday and now >= self.starts) or (weekday == next_day and now < self.ends)


def on_duty(roster: Sequence[RosterSlot], local: dt.datetime) -> bool:
    return any(slot.covers(local) for slot in roster)


@dataclass(frozen=True)
class TeamInput:
    """A team as an administrator describes it; `districts` are names, codes or ids."""

    code: str
    name: str
    phone_e164: str = field(repr=False)
    base_lat: float
    base_lon: float
    address: str = ""
    status: TeamStatus = TeamStatus.ACTIVE
    districts: tuple[str, ...] = ()
    members: tuple[TeamMember, ...] = ()
    roster: tuple[RosterSlot, ...] = ()


@dataclass(frozen=True)
class TeamCard:
    team: EmergencyTeam
    district_ids: tuple[int, ...]
    members: tuple[TeamMember, ...]
    roster: tuple[RosterSlot, ...]


@dataclass(frozen=True)
class TeamContact:
    """Who is behind a phone number: the team's duty phone (member None) or one member."""

    team: EmergencyTeam
    member: TeamMember | None


TEAM_COLUMNS = "t.id, t.code, t.name, t.phone_e164, t.base_lat, t.base_lon, t.address, t.status, t.created_at"


def team_from_row(row: asyncpg.Record) -> EmergencyTeam:
    return EmergencyTeam(
        id=row["id"],
        code=row["code"],
        name=row["name"],
        phone_e164=row["phone_e164"],
        base_lat=row["base_lat"],
        base_lon=row["base_lon"],
        address=row["address"],
        status=TeamStatus(row["status"]),
        created_at=row["created_at"],
    )


async def list_teams(conn: Conn, *, status: TeamStatus | None = None) -> list[EmergencyTeam]:
    rows = await conn.fetch(
        f"""SELECT {TEAM_COLUMNS} FROM emergency_teams t
            WHERE ($1::text IS NULL OR t.status = $1) ORDER BY t.code""",
        status.value if status else None,
    )
    return [team_from_row(r) for r in rows]


async def team_districts(conn: Conn, team_id: int) -> tuple[int, ...]:
    rows = await conn.fetch(
        "SELECT district_id FROM team_districts WHERE team_id = $1 ORDER BY district_id", team_id
    )
    return tuple(r["district_id"] for r in rows)


async def team_members(conn: Conn, team_id: int) -> tuple[TeamMember, ...]:
    rows = await conn.fetch(
        """SELECT name, phone_e164, role FROM team_members WHERE team_id = $1
           ORDER BY role = 'leader' DESC, id""",
        team_id,
    )
    return tuple(TeamMember(r["name"], r["phone_e164"], MemberRole(r["role"])) for r in rows)


async def team_roster(conn: Conn, team_id: int) -> tuple[RosterSlot, ...]:
    rows = await conn.fetch(
        "SELECT weekday, starts, ends FROM team_roster WHERE team_id = $1 ORDER BY weekday, starts", team_id
    )
    return tuple(RosterSlot(r["weekday"], r["starts"], r["ends"]) for r in rows)


async def get_team(conn: Conn, team_id: int) -> TeamCard | None:
    row = await conn.fetchrow(f"SELECT {TEAM_COLUMNS} FROM emergency_teams t WHERE t.id = $1", team_id)
    if row is None:
        return None
    return TeamCard(
        team=team_from_row(row),
        district_ids=await team_districts(conn, team_id),
        members=await team_members(conn, team_id),
        roster=await team_roster(conn, team_id),
    )


async def teams_covering(conn: Conn, district_id: int, *, active_only: bool = True) -> list[EmergencyTeam]:
    rows = await conn.fetch(
        f"""SELECT {TEAM_COLUMNS} FROM emergency_teams t JOIN team_districts td ON td.team_id = t.id
            WHERE td.district_id = $1 AND (t.status = 'active' OR NOT $2) ORDER BY t.code""",
        district_id,
        active_only,
    )
    return [team_from_row(r) for r in rows]


async def find_team_contacts(conn: Conn, e164: str) -> list[TeamContact]:
    """Teams whose duty phone, or one of whose members' phones, is this number."""
    rows = await conn.fetch(
        f"""SELECT {TEAM_COLUMNS}, NULL AS member_name, NULL AS member_role
            FROM emergency_teams t WHERE t.phone_e164 = $1
            UNION ALL
            SELECT {TEAM_COLUMNS}, m.name, m.role
            FROM team_members m JOIN emergency_teams t ON t.id = m.team_id WHERE m.phone_e164 = $1
            ORDER BY code, member_name NULLS FIRST""",
        e164,
    )
    return [
        TeamContact(
            team=team_from_row(r),
            member=TeamMember(r["member_name"], e164, MemberRole(r["member_role"]))
            if r["member_name"] is not None
            else None,
        )
        for r in rows
    ]


UPSERT_TEAM = f"""
INSERT INTO emergency_teams AS t (code, name, phone_e164, base_lat, base_lon, address, status)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, phone_e164 = EXCLUDED.phone_e164,
    base_lat = EXCLUDED.base_lat, base_lon = EXCLUDED.base_lon, address = EXCLUDED.address,
    status = EXCLUDED.status
WHERE (t.name, t.phone_e164, t.base_lat, t.base_lon, t.address, t.status)
      IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.phone_e164, EXCLUDED.base_lat, EXCLUDED.base_lon, EXCLUDED.address,
       EXCLUDED.status)
RETURNING {TEAM_COLUMNS}
"""


async def upsert_team(conn: Conn, team: TeamInput) -> tuple[EmergencyTeam, bool]:
    """Create the team with this code or bring it (members, districts, roster too) up to date."""
    checker = Checker()
    districts: list[int] = []
    for ref in team.districts:
        try:
            districts.append((await resolve_district(conn, ref)).id)
        except PlaceError as exc:
            checker.fail("districts", str(exc))
    if any(not 1 <= slot.weekday <= 7 for slot in team.roster):
        checker.fail("roster", "a roster weekday is 1 (Monday) to 7 (Sunday)")
    phones = [m.phone_e164 for m in team.members]
    if len(set(phones)) != len(phones):
        checker.fail("members", "two members have the same phone number")
    checker.done()
    try:
        async with conn.transaction():
            return await _upsert_team(conn, team, tuple(sorted(set(districts))))
    except asyncpg.UniqueViolationError:
        raise InvalidInput.one("roster", "two roster slots start on the same day at the same time") from None


async def _upsert_team(conn: Conn, team: TeamInput, districts: tuple[int, ...]) -> tuple[EmergencyTeam, bool]:
    row = await conn.fetchrow(
        UPSERT_TEAM,
        team.code,
        team.name,
        team.phone_e164,
        team.base_lat,
        team.base_lon,
        team.address,
        team.status.value,
    )
    changed = row is not None
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {TEAM_COLUMNS} FROM emergency_teams t WHERE t.code = $1", team.code
        )
        assert row is not None
    team_id: int = row["id"]
    if await team_districts(conn, team_id) != districts:
        await conn.execute("DELETE FROM team_districts WHERE team_id = $1", team_id)
        await conn.execute(
            "INSERT INTO team_districts (team_id, district_id) SELECT $1, unnest($2::int[])",
            team_id,
            districts,
        )
        changed = True
    if sorted(await team_members(conn, team_id)) != sorted(team.members):
        await conn.execute("DELETE FROM team_members WHERE team_id = $1", team_id)
        await conn.executemany(
            "INSERT INTO team_members (team_id, name, phone_e164, role) VALUES ($1, $2, $3, $4)",
            [(team_id, m.name, m.phone_e164, m.role.value) for m in team.members],
        )
        changed = True
    if await team_roster(conn, team_id) != tuple(sorted(team.roster)):
        await conn.execute("DELETE FROM team_roster WHERE team_id = $1", team_id)
        await conn.executemany(
            "INSERT INTO team_roster (team_id, weekday, starts, ends) VALUES ($1, $2, $3, $4)",
            [(team_id, s.weekday, s.starts, s.ends) for s in team.roster],
        )
        changed = True
    return team_from_row(row), changed
