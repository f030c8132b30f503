"""Write a planned demo floor into the registry tables, in one transaction.

Row ids are drawn from the tables' own sequences up front, so every child
row (phones, contacts, devices, provider areas, roster) can be written with
COPY in one pass instead of one INSERT … RETURNING per parent. An advisory
lock makes "is the registry empty? then fill it" one step, even when two
instances start with `--demo` at the same moment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from dispatch.database import Conn
from dispatch.demo.catalogue import CATEGORIES, ITEMS, SUBSIDY_PROGRAMMES
from dispatch.demo.devices import HOME_UNIT, PENDANT, SMOKE, DeviceDraft
from dispatch.demo.geography import DISTRICTS, Community
from dispatch.demo.people import ResidentDraft
from dispatch.demo.plan import FloorPlan, plan_floor
from dispatch.demo.providers import ProviderDraft
from dispatch.runtime import Runtime

log = logging.getLogger(__name__)


class DemoFloorError(Exception):
    """The demo floor cannot be built into this database; the message says why and what to do."""


@dataclass(frozen=True)
class DemoSummary:
    seed: int
    districts: int
    streets: int
    communities: int
    residents: int
    resident_phones: int
    emergency_contacts: int
    subsidised_residents: int
    subsidy_programmes: int
    home_units: int
    pendants: int
    smoke_sensors: int
    categories: int
    items: int
    providers: int
    provider_items: int
    provider_areas: int
    teams: int
    team_members: int
    roster_rows: int
    seconds: float

    def describe(self) -> str:
        return "\n".join(
            (
                f"Hohhot demo floor (seed {self.seed}) built in {self.seconds:.2f} s"
                f" / 呼和浩特演示数据已生成（用时 {self.seconds:.2f} 秒）",
                f"  geography 地理: {self.districts} districts 区县, {self.streets} streets 街道/镇,"
                f" {self.communities} communities 社区/村",
                f"  residents 老人: {self.residents:,} (phones 电话 {self.resident_phones:,},"
                f" emergency contacts 紧急联系人 {self.emergency_contacts:,},"
                f" subsidised 享受补贴 {self.subsidised_residents:,})",
                f"  devices 设备: {self.home_units:,} home units 电子保姆,"
                f" {self.pendants:,} pendants 呼叫挂件, {self.smoke_sensors:,} smoke sensors 烟感",
                f"  catalogue 服务目录: {self.categories} categories 类, {self.items} items 项,"
                f" {self.subsidy_programmes} subsidy programmes 补贴项目",
                f"  providers 加盟服务商: {self.providers:,} (prices 服务报价 {self.provider_items:,},"
                f" areas served 服务区域 {self.provider_areas:,})",
                f"  emergency teams 应急服务队: {self.teams} (members 队员 {self.team_members},"
                f" roster rows 排班 {self.roster_rows})",
            )
        )


# The registry tables a demo floor fills; any row in them means "not empty".
FLOOR_TABLES = ("residents", "districts", "providers", "emergency_teams", "devices")

# Children before parents. Phones and contacts go with their resident, items
# and areas with their provider, members and roster with their team; devices
# do not cascade and go first. The events table is append-only and untouched.
_CLEAR_FLOOR = (
    "DELETE FROM devices",
    "DELETE FROM residents",
    "DELETE FROM providers",
    "DELETE FROM emergency_teams",
    "DELETE FROM communities",
    "DELETE FROM streets",
    "DELETE FROM districts",
)

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('careline:demo-floor'))"

_RESERVE_IDS = "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)"

_UPSERT_CATEGORY = """
    INSERT INTO service_categories (code, name_zh, name_en, position) VALUES ($1, $2, $3, $4)
    ON CONFLICT (code) DO UPDATE
        SET name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en, position = EXCLUDED.position
"""
_UPSERT_ITEM = """
    INSERT INTO service_items
        (code, category_code, name_zh, name_en, unit, unit_price_fen, subsidy_eligible, urgent, active)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)
    ON CONFLICT (code) DO UPDATE
        SET category_code = EXCLUDED.category_code, name_zh = EXCLUDED.name_zh,
            name_en = EXCLUDED.name_en, unit = EXCLUDED.unit, unit_price_fen = EXCLUDED.unit_price_fen,
            subsidy_eligible = EXCLUDED.subsidy_eligible, urgent = EXCLUDED.urgent, active = true
"""
_UPSERT_PROGRAMME = """
    INSERT INTO subsidy_programmes (code, name, monthly_allowance_fen, coverage_percent)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (code) DO UPDATE
        SET name = EXCLUDED.name, monthly_allowance_fen = EXCLUDED.monthly_allowance_fen,
            coverage_percent = EXCLUDED.coverage_percent
"""


async def floor_row_counts(conn: Conn) -> dict[str, int]:
    """Rows in each registry table the demo floor fills (the table names are constants)."""
    selects = ", ".join(f"(SELECT count(*) FROM {table}) AS {table}" for table in FLOOR_TABLES)
    row = await conn.fetchrow(f"SELECT {selects}")
    assert row is not None
    return {table: int(row[table]) for table in FLOOR_TABLES}


async def build_demo_floor(
    runtime: Runtime, seed: int | None = None, *, replace: bool = False
) -> DemoSummary:
    """Build the Hohhot demo floor at the configured sizes.

    Refuses (DemoFloorError) when the registry already holds rows, unless
    `replace` is set: then the registry rows are deleted first, in the same
    transaction, so a failure leaves the old floor as it was.
    """
    chosen = runtime.config.demo.seed if seed is None else seed
    async with runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute(_LOCK)
        occupied = {t: n for t, n in (await floor_row_counts(conn)).items() if n}
        if occupied and not replace:
            held = ", ".join(f"{table} {count:,}" for table, count in occupied.items())
            raise DemoFloorError(
                f"the database already holds registry rows ({held}); the demo floor is only built "
                "into an empty registry (pass replace=True to delete those rows first)"
            )
        if occupied:
            await _clear_floor(conn)
        return await _write_floor(conn, runtime, chosen)


async def build_demo_floor_if_empty(runtime: Runtime) -> DemoSummary | None:
    """Build the floor unless the registry already holds rows (a restart keeps its data)."""
    async with runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute(_LOCK)
        if any((await floor_row_counts(conn)).values()):
            return None
        return await _write_floor(conn, runtime, runtime.config.demo.seed)


async def _clear_floor(conn: Conn) -> None:
    try:
        for statement in _CLEAR_FLOOR:
            await conn.execute(statement)
    except asyncpg.ForeignKeyViolationError as exc:
        raise DemoFloorError(
            f"cannot replace the demo floor: other records still refer to it ({exc.detail or exc})"
        ) from None


async def _reserve_ids(conn: Conn, table: str, count: int) -> list[int]:
    rows = await conn.fetch(_RESERVE_IDS, table, count)
    return [int(row[0]) for row in rows]


async def _copy(conn: Conn, table: str, columns: Sequence[str], records: Iterable[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table(table, columns=list(columns), records=list(records))


def _community_key(place: Community) -> tuple[str, str, str]:
    return place.district.code, place.street.name, place.name


async def _write_floor(conn: Conn, runtime: Runtime, seed: int) -> DemoSummary:
    started = time.perf_counter()
    now = runtime.clock()
    plan = plan_floor(seed, runtime.config.demo, now, now.astimezone(runtime.tz).date())

    await conn.executemany(_UPSERT_CATEGORY, [(c.code, c.name_zh, c.name_en, c.position) for c in CATEGORIES])
    await conn.executemany(
        _UPSERT_ITEM,
        [
            (
                i.code,
                i.category_code,
                i.name_zh,
                i.name_en,
                i.unit,
                i.unit_price_fen,
                i.subsidy_eligible,
                i.urgent,
            )
            for i in ITEMS
        ],
    )
    await conn.executemany(
        _UPSERT_PROGRAMME,
        [(p.code, p.name, p.monthly_allowance_fen, p.coverage_percent) for p in SUBSIDY_PROGRAMMES],
    )

    district_ids, community_ids = await _write_geography(conn, plan)
    await _write_residents(conn, plan, community_ids)
    provider_items, provider_areas = await _write_providers(conn, plan, district_ids, community_ids)
    team_members, roster_rows = await _write_teams(conn, plan, district_ids)

    residents = plan.residents
    kinds = [d.kind for d in plan.devices]
    summary = DemoSummary(
        seed=seed,
        districts=len(DISTRICTS),
        streets=sum(len(d.streets) for d in DISTRICTS),
        communities=len(plan.communities),
        residents=len(residents),
        resident_phones=sum(len(r.phones) for r in residents),
        emergency_contacts=sum(len(r.contacts) for r in residents),
        subsidised_residents=sum(1 for r in residents if r.subsidy_programme),
        subsidy_programmes=len(SUBSIDY_PROGRAMMES),
        home_units=kinds.count(HOME_UNIT),
        pendants=kinds.count(PENDANT),
        smoke_sensors=kinds.count(SMOKE),
        categories=len(CATEGORIES),
        items=len(ITEMS),
        providers=len(plan.providers),
        provider_items=provider_items,
        provider_areas=provider_areas,
        teams=len(plan.teams),
        team_members=team_members,
        roster_rows=roster_rows,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "demo floor built: seed %d, %d residents, %d devices, %d providers, %d teams in %.2fs",
        seed,
        summary.residents,
        len(plan.devices),
        summary.providers,
        summary.teams,
        summary.seconds,
    )
    return summary


async def _write_geography(
    conn: Conn, plan: FloorPlan
) -> tuple[dict[str, int], dict[tuple[str, str, str], int]]:
    district_ids = dict(
        zip((d.code for d in DISTRICTS), await _reserve_ids(conn, "districts", len(DISTRICTS)), strict=True)
    )
    streets = [(d, s) for d in DISTRICTS for s in d.streets]
    street_ids = dict(
        zip(
            ((d.code, s.name) for d, s in streets),
            await _reserve_ids(conn, "streets", len(streets)),
            strict=True,
        )
    )
    community_ids = dict(
        zip(
            (_community_key(c) for c in plan.communities),
            await _reserve_ids(conn, "communities", len(plan.communities)),
            strict=True,
        )
    )
    await _copy(
        conn,
        "districts",
        ("id", "code", "name", "lat", "lon"),
        ((district_ids[d.code], d.code, d.name, *d.centre) for d in DISTRICTS),
    )
    await _copy(
        conn,
        "streets",
        ("id", "district_id", "name"),
        ((street_ids[d.code, s.name], district_ids[d.code], s.name) for d, s in streets),
    )
    await _copy(
        conn,
        "communities",
        ("id", "street_id", "name", "lat", "lon"),
        (
            (
                community_ids[_community_key(c)],
                street_ids[c.district.code, c.street.name],
                c.name,
                c.lat,
                c.lon,
            )
            for c in plan.communities
        ),
    )
    return district_ids, community_ids


def _columns(text: str) -> tuple[str, ...]:
    return tuple(text.split())


RESIDENT_COLUMNS = _columns(
    """id id_number name sex birth_date address community_id lat lon living_situation language
    chronic_conditions medication allergies mobility cognition notes
    subsidy_programme monthly_allowance_fen"""
)
DEVICE_COLUMNS = _columns(
    """serial kind resident_id caller_e164 dc09_account cloud_id heartbeat_interval_s last_seen_at
    battery_percent status false_alarms installed_at"""
)
PROVIDER_COLUMNS = _columns(
    "id licence_no name contact_name phone_e164 sms_e164 address base_lat base_lon capacity status rating"
)


def _resident_row(rid: int, r: ResidentDraft, community_id: int) -> tuple[Any, ...]:
    h = r.health
    return (
        *(rid, r.id_number, r.name, r.sex, r.birth_date, r.address, community_id, r.lat, r.lon),
        *(r.living_situation, r.language, h.chronic_conditions, h.medication, h.allergies),
        *(h.mobility, h.cognition, h.notes, r.subsidy_programme, r.monthly_allowance_fen),
    )


def _device_row(d: DeviceDraft, resident_id: int | None) -> tuple[Any, ...]:
    return (
        *(d.serial, d.kind, resident_id, d.caller_e164, d.dc09_account, d.cloud_id),
        *(d.heartbeat_interval_s, d.last_seen_at, d.battery_percent, d.status, d.false_alarms),
        d.installed_at,
    )


def _provider_row(pid: int, p: ProviderDraft) -> tuple[Any, ...]:
    return (
        *(pid, p.licence_no, p.name, p.contact_name, p.phone_e164, p.sms_e164, p.address),
        *(p.base_lat, p.base_lon, p.capacity, p.status, p.rating),
    )


async def _write_residents(
    conn: Conn, plan: FloorPlan, community_ids: dict[tuple[str, str, str], int]
) -> None:
    ids = await _reserve_ids(conn, "residents", len(plan.residents))
    pairs = list(zip(ids, plan.residents, strict=True))
    await _copy(
        conn,
        "residents",
        RESIDENT_COLUMNS,
        (_resident_row(rid, r, community_ids[_community_key(r.community)]) for rid, r in pairs),
    )
    await _copy(
        conn,
        "resident_phones",
        ("resident_id", "e164", "kind", "position"),
        (
            (rid, e164, kind, position)
            for rid, r in pairs
            for position, (e164, kind) in enumerate(r.phones, start=1)
        ),
    )
    await _copy(
        conn,
        "emergency_contacts",
        ("resident_id", "position", "name", "relation", "phone_e164"),
        (
            (rid, position, c.name, c.relation, c.phone_e164)
            for rid, r in pairs
            for position, c in enumerate(r.contacts, start=1)
        ),
    )
    await _copy(
        conn,
        "devices",
        DEVICE_COLUMNS,
        (_device_row(d, None if d.resident is None else ids[d.resident]) for d in plan.devices),
    )


async def _write_providers(
    conn: Conn,
    plan: FloorPlan,
    district_ids: dict[str, int],
    community_ids: dict[tuple[str, str, str], int],
) -> tuple[int, int]:
    ids = await _reserve_ids(conn, "providers", len(plan.providers))
    pairs = list(zip(ids, plan.providers, strict=True))
    await _copy(conn, "providers", PROVIDER_COLUMNS, (_provider_row(pid, p) for pid, p in pairs))
    items = [(pid, code, price) for pid, p in pairs for code, price in p.items]
    await _copy(conn, "provider_items", ("provider_id", "item_code", "price_fen"), items)
    areas: list[tuple[int, int | None, int | None]] = [
        (pid, district_ids[d.code], None) for pid, p in pairs for d in p.districts
    ]
    areas += [(pid, None, community_ids[_community_key(c)]) for pid, p in pairs for c in p.communities]
    await _copy(conn, "provider_areas", ("provider_id", "district_id", "community_id"), areas)
    return len(items), len(areas)


async def _write_teams(conn: Conn, plan: FloorPlan, district_ids: dict[str, int]) -> tuple[int, int]:
    ids = await _reserve_ids(conn, "emergency_teams", len(plan.teams))
    pairs = list(zip(ids, plan.teams, strict=True))
    await _copy(
        conn,
        "emergency_teams",
        ("id", "code", "name", "phone_e164", "base_lat", "base_lon", "address"),
        ((tid, t.code, t.name, t.phone_e164, t.base_lat, t.base_lon, t.address) for tid, t in pairs),
    )
    await _copy(
        conn,
        "team_districts",
        ("team_id", "district_id"),
        ((tid, district_ids[d.code]) for tid, t in pairs for d in t.districts),
    )
    members = [(tid, m.name, m.phone_e164, m.role) for tid, t in pairs for m in t.members]
    await _copy(conn, "team_members", ("team_id", "name", "phone_e164", "role"), members)
    roster = [(tid, *shift) for tid, t in pairs for shift in t.roster]
    await _copy(conn, "team_roster", ("team_id", "weekday", "starts", "ends"), roster)
    return len(members), len(roster)
