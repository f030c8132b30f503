"""The Hohhot demo floor, built into real PostgreSQL databases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg
import pytest

from dispatch.config import Config, DemoConfig, ServerConfig
from dispatch.database import create_pool
from dispatch.demo import DemoFloorError, build_demo_floor, prepare_demo_floor
from dispatch.demo.access import local_url
from dispatch.demo.geography import DISTRICTS
from dispatch.demo.numbering import credit_check_character
from dispatch.id_numbers import parse_id_number
from dispatch.phones import PhoneBook
from dispatch.runtime import Runtime
from dispatch.users import user_for_password, user_for_token
from tests.helpers import with_database

EXPECTED_COMMUNITIES = {
    "新城区": 48,
    "回民区": 57,
    "玉泉区": 49,
    "赛罕区": 87,
    "土默特左旗": 13,
    "托克托县": 12,
    "和林格尔县": 10,
    "清水河县": 6,
    "武川县": 7,
}
SMALL = DemoConfig(seed=7, residents=400, devices=120, providers=25, teams=12)

RuntimeFactory = Callable[[DemoConfig], Awaitable[Runtime]]


def sized(config: Config, demo: DemoConfig) -> Config:
    return dataclasses.replace(config, demo=demo)


@pytest.fixture
async def fresh_runtime(
    pg_admin_dsn: str, template_dsn: str, config: Config
) -> AsyncIterator[RuntimeFactory]:
    """More migrated, empty databases for this test, each with its own pool and demo sizes."""
    template = urlsplit(template_dsn).path.lstrip("/")
    names: list[str] = []
    pools: list[asyncpg.Pool] = []

    async def make(demo: DemoConfig) -> Runtime:
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.close()
        names.append(name)
        pool = await create_pool(with_database(pg_admin_dsn, name), min_size=1, max_size=3)
        pools.append(pool)
        return Runtime(config=sized(config, demo), pool=pool)

    yield make
    for pool in pools:
        await pool.close()
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def residents_digest(pool: asyncpg.Pool) -> str:
    rows = await pool.fetch(
        """SELECT r.id_number, r.name,
                  coalesce(string_agg(p.e164, ',' ORDER BY p.position), '') AS phones
           FROM residents r LEFT JOIN resident_phones p ON p.resident_id = r.id
           GROUP BY r.id ORDER BY r.id_number"""
    )
    text = "\n".join(f"{r['id_number']}|{r['name']}|{r['phones']}" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest()


async def test_full_size_floor_has_the_configured_figures(runtime: Runtime) -> None:
    demo = runtime.config.demo
    summary = await build_demo_floor(runtime, seed=demo.seed)
    pool = runtime.pool

    assert await pool.fetchval("SELECT count(*) FROM districts") == 9
    assert await pool.fetchval("SELECT count(*) FROM communities") == 289
    per_district = await pool.fetch(
        """SELECT d.name, count(*) AS n FROM communities c
           JOIN streets s ON s.id = c.street_id JOIN districts d ON d.id = s.district_id GROUP BY d.name"""
    )
    assert {r["name"]: r["n"] for r in per_district} == EXPECTED_COMMUNITIES
    jinqiao = await pool.fetchval(
        """SELECT count(*) FROM communities c JOIN streets s ON s.id = c.street_id
           JOIN districts d ON d.id = s.district_id WHERE d.name = '赛罕区' AND s.name = '金桥开发区'"""
    )
    assert jinqiao == 6
    assert await pool.fetchval("SELECT count(*) FROM residents") == demo.residents == 5000
    assert (
        await pool.fetchval("SELECT count(*) FROM devices WHERE kind = 'home_unit'") == demo.devices == 1300
    )
    assert await pool.fetchval("SELECT count(*) FROM service_categories") == 9
    assert await pool.fetchval("SELECT count(*) FROM service_items") >= 100
    assert await pool.fetchval("SELECT count(*) FROM providers") == demo.providers == 130
    assert await pool.fetchval("SELECT count(*) FROM emergency_teams") == demo.teams == 12
    assert await pool.fetchval("SELECT count(*) FROM subsidy_programmes") >= 2

    assert summary.residents == 5000
    assert summary.home_units == 1300
    assert summary.communities == 289
    assert summary.resident_phones == await pool.fetchval("SELECT count(*) FROM resident_phones")
    assert summary.seconds < 30
    described = summary.describe()
    assert "5,000" in described
    assert "老人" in described
    assert f"{summary.seconds:.2f} s" in described

    # Home units go to people living alone first, and there are enough of them here.
    alone = await pool.fetchval(
        """SELECT count(*) FROM devices d JOIN residents r ON r.id = d.resident_id
           WHERE d.kind = 'home_unit' AND r.living_situation = 'alone'"""
    )
    assert alone == 1300
    situations = Counter(
        r["living_situation"] for r in await pool.fetch("SELECT living_situation FROM residents")
    )
    assert 0.30 < situations["alone"] / 5000 < 0.40
    assert 0.35 < situations["empty_nest"] / 5000 < 0.45


async def test_residents_are_valid_people(runtime: Runtime) -> None:
    runtime = dataclasses.replace(runtime, config=sized(runtime.config, SMALL))
    await build_demo_floor(runtime, seed=SMALL.seed)
    today = runtime.clock().astimezone(runtime.tz).date()
    area_codes = {d.name: d.code for d in DISTRICTS}
    rows = await runtime.pool.fetch(
        """SELECT r.id_number, r.sex, r.birth_date, r.language, d.name AS district
           FROM residents r JOIN communities c ON c.id = r.community_id
           JOIN streets s ON s.id = c.street_id JOIN districts d ON d.id = s.district_id"""
    )
    assert len(rows) == SMALL.residents
    for row in rows:
        parsed = parse_id_number(row["id_number"])
        assert parsed.birth_date == row["birth_date"]
        assert parsed.sex == row["sex"]
        assert row["id_number"].startswith(area_codes[row["district"]])
        age = (
            today.year
            - parsed.birth_date.year
            - ((today.month, today.day) < (parsed.birth_date.month, parsed.birth_date.day))
        )
        assert 60 <= age <= 100
    assert {r["language"] for r in rows} == {"zh", "mn"}

    contacts = await runtime.pool.fetch(
        """SELECT r.id, array_agg(e.position ORDER BY e.position) AS positions
           FROM residents r LEFT JOIN emergency_contacts e ON e.resident_id = r.id GROUP BY r.id"""
    )
    for row in contacts:
        assert 1 <= len(row["positions"]) <= 3
        assert list(row["positions"]) == list(range(1, len(row["positions"]) + 1))


async def test_every_phone_is_valid_e164_and_unique(runtime: Runtime) -> None:
    runtime = dataclasses.replace(runtime, config=sized(runtime.config, SMALL))
    await build_demo_floor(runtime)
    rows = await runtime.pool.fetch(
        """SELECT e164 AS phone FROM resident_phones
           UNION ALL SELECT phone_e164 FROM emergency_contacts
           UNION ALL SELECT caller_e164 FROM devices WHERE caller_e164 IS NOT NULL
           UNION ALL SELECT sms_e164 FROM providers
           UNION ALL SELECT phone_e164 FROM providers WHERE phone_e164 IS NOT NULL
           UNION ALL SELECT phone_e164 FROM emergency_teams
           UNION ALL SELECT phone_e164 FROM team_members"""
    )
    phones = [r["phone"] for r in rows]
    book = PhoneBook()
    assert all(book.normalise(p) == p for p in phones)
    assert len(set(phones)) == len(phones)
    kinds = await runtime.pool.fetch("SELECT e164, kind FROM resident_phones")
    assert all(book.kind(r["e164"]) == r["kind"] for r in kinds)
    assert {r["kind"] for r in kinds} == {"mobile", "landline"}
    assert all(r["e164"].startswith("+86471") for r in kinds if r["kind"] == "landline")


async def test_providers_and_catalogue_are_consistent(runtime: Runtime) -> None:
    runtime = dataclasses.replace(runtime, config=sized(runtime.config, SMALL))
    await build_demo_floor(runtime)
    pool = runtime.pool
    licences = [r["licence_no"] for r in await pool.fetch("SELECT licence_no FROM providers")]
    assert all(re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{18}", licence) for licence in licences)
    assert all(credit_check_character(licence[:17]) == licence[17] for licence in licences)
    # Every provider sells something, serves somewhere, and near the list price.
    for table in ("provider_items", "provider_areas"):
        idle = await pool.fetchval(
            f"""SELECT count(*) FROM providers p
                WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE x.provider_id = p.id)"""
        )
        assert idle == 0, table
    assert (
        await pool.fetchval(
            """SELECT count(*) FROM provider_items pi JOIN service_items si ON si.code = pi.item_code
           WHERE pi.price_fen NOT BETWEEN si.unit_price_fen * 0.8 - 100 AND si.unit_price_fen * 1.25 + 100"""
        )
        == 0
    )
    capacities = [r["capacity"] for r in await pool.fetch("SELECT capacity FROM providers")]
    assert all(1 <= c <= 20 for c in capacities)
    assert await pool.fetchval("SELECT count(*) FROM service_items WHERE urgent") >= 3
    assert await pool.fetchval("SELECT count(*) FROM service_items WHERE code = 'AR01' AND urgent") == 1
    eligible = await pool.fetchval("SELECT count(*) FROM service_items WHERE subsidy_eligible")
    assert eligible > 50
    assert (
        await pool.fetchval("SELECT count(*) FROM residents WHERE subsidy_programme IS NOT NULL")
        > SMALL.residents // 10
    )


async def test_every_district_is_covered_by_a_team_on_a_sound_roster(runtime: Runtime) -> None:
    runtime = dataclasses.replace(runtime, config=sized(runtime.config, SMALL))
    await build_demo_floor(runtime)
    pool = runtime.pool
    coverage = {
        r["name"]: r["teams"]
        for r in await pool.fetch(
            """SELECT d.name, count(td.team_id) AS teams FROM districts d
               LEFT JOIN team_districts td ON td.district_id = d.id GROUP BY d.name"""
        )
    }
    assert all(coverage[name] >= 1 for name in EXPECTED_COMMUNITIES)
    assert all(coverage[name] >= 2 for name in ("新城区", "回民区", "玉泉区", "赛罕区"))
    sizes = await pool.fetch(
        """SELECT t.code, count(*) AS members, count(*) FILTER (WHERE m.role = 'leader') AS leaders
           FROM emergency_teams t JOIN team_members m ON m.team_id = t.id GROUP BY t.code"""
    )
    assert len(sizes) == 12
    assert all(3 <= r["members"] <= 6 and r["leaders"] == 1 for r in sizes)
    # Some teams are on all day every day (00:00-00:00), some work shifts.
    all_day = await pool.fetchval(
        """SELECT count(*) FROM (SELECT team_id FROM team_roster WHERE starts = '00:00' AND ends = '00:00'
           GROUP BY team_id HAVING count(*) = 7) t"""
    )
    assert 1 <= all_day < 12
    assert await pool.fetchval("SELECT count(*) FROM team_roster WHERE ends < starts") > 0


async def test_few_teams_still_cover_every_district(fresh_runtime: RuntimeFactory) -> None:
    runtime = await fresh_runtime(dataclasses.replace(SMALL, residents=20, devices=5, providers=3, teams=2))
    await build_demo_floor(runtime)
    uncovered = await runtime.pool.fetchval(
        """SELECT count(*) FROM districts d
           WHERE NOT EXISTS (SELECT 1 FROM team_districts t WHERE t.district_id = d.id)"""
    )
    assert uncovered == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM emergency_teams") == 2


async def test_same_seed_same_residents_other_seed_differs(fresh_runtime: RuntimeFactory) -> None:
    first = await fresh_runtime(SMALL)
    second = await fresh_runtime(SMALL)
    third = await fresh_runtime(SMALL)
    await build_demo_floor(first, seed=41)
    await build_demo_floor(second, seed=41)
    await build_demo_floor(third, seed=42)
    assert await residents_digest(first.pool) == await residents_digest(second.pool)
    assert await residents_digest(first.pool) != await residents_digest(third.pool)
    licences = "SELECT string_agg(licence_no || name, ',' ORDER BY licence_no) FROM providers"
    assert await first.pool.fetchval(licences) == await second.pool.fetchval(licences)


async def test_refuses_a_registry_that_is_not_empty_unless_replacing(runtime: Runtime) -> None:
    runtime = dataclasses.replace(runtime, config=sized(runtime.config, SMALL))
    await build_demo_floor(runtime, seed=1)
    before = await residents_digest(runtime.pool)
    with pytest.raises(DemoFloorError, match="already holds registry rows"):
        await build_demo_floor(runtime, seed=2)
    assert await residents_digest(runtime.pool) == before

    await runtime.pool.execute(
        "INSERT INTO events (subject_type, subject_id, kind, actor) VALUES ('resident', 1, 'note', 'test')"
    )
    summary = await build_demo_floor(runtime, seed=2, replace=True)
    assert summary.residents == SMALL.residents
    assert await runtime.pool.fetchval("SELECT count(*) FROM residents") == SMALL.residents
    assert await runtime.pool.fetchval("SELECT count(*) FROM providers") == SMALL.providers
    assert await runtime.pool.fetchval("SELECT count(*) FROM districts") == 9
    assert await residents_digest(runtime.pool) != before
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 1


async def test_prepare_demo_floor_builds_once_and_prints_fresh_log_ins(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = dataclasses.replace(runtime, config=sized(runtime.config, SMALL))
    url = runtime.config.server.public_url

    await prepare_demo_floor(runtime)
    first = capsys.readouterr().out
    digest = await residents_digest(runtime.pool)
    await prepare_demo_floor(runtime)
    second = capsys.readouterr().out

    assert await runtime.pool.fetchval("SELECT count(*) FROM residents") == SMALL.residents
    assert await runtime.pool.fetchval("SELECT count(*) FROM districts") == 9
    assert await residents_digest(runtime.pool) == digest
    assert "老人" in first
    assert "kept" not in first
    assert "kept" in second

    def credentials(out: str) -> tuple[str, str, str]:
        admin = re.search(r"demo-admin .*密码: (\S+)", out)
        operator = re.search(r"demo-operator .*密码: (\S+)", out)
        token = re.search(r"Bearer (cl_\S+)\" " + re.escape(url) + "/api/v1/residents", out)
        assert admin, out
        assert operator, out
        assert token, out
        assert out.count(token.group(1)) == 2  # the token line and the curl example
        return admin.group(1), operator.group(1), token.group(1)

    assert url in first
    assert f"{url}/console/" in first
    assert url in second
    old_admin, old_operator, old_token = credentials(first)
    admin_password, operator_password, token = credentials(second)
    assert admin_password != old_admin
    assert token != old_token

    async with runtime.pool.acquire() as conn:
        admin = await user_for_password(conn, "demo-admin", admin_password)
        operator = await user_for_password(conn, "demo-operator", operator_password)
        assert admin is not None
        assert admin.role == "admin"
        assert operator is not None
        assert operator.role == "operator"
        assert await user_for_password(conn, "demo-operator", old_operator) is None
        supervisor = re.search(r"demo-supervisor .*密码: (\S+)", second)
        assert supervisor, second
        assert await user_for_password(conn, "demo-supervisor", supervisor.group(1)) is not None
        by_token = await user_for_token(conn, token)
        assert by_token is not None
        assert by_token.username == "demo-admin"
        assert await user_for_token(conn, old_token) is None
    assert await runtime.pool.fetchval("SELECT count(*) FROM users") == 3


async def test_birth_dates_follow_the_clock(runtime: Runtime) -> None:
    """Ages stay within 60-100 on whatever day the demo is built, leap days included."""
    leap_day = dt.datetime(2028, 2, 29, 4, 0, tzinfo=dt.UTC)
    runtime = dataclasses.replace(runtime, config=sized(runtime.config, SMALL), clock=lambda: leap_day)
    await build_demo_floor(runtime)
    span = await runtime.pool.fetchrow("SELECT min(birth_date), max(birth_date) FROM residents")
    assert span is not None
    oldest, youngest = span
    assert oldest > dt.date(1927, 2, 28)
    assert youngest <= dt.date(1968, 2, 29)


async def test_replace_refuses_while_other_records_refer_to_the_floor(runtime: Runtime) -> None:
    runtime = dataclasses.replace(runtime, config=sized(runtime.config, SMALL))
    await build_demo_floor(runtime, seed=1)
    before = await residents_digest(runtime.pool)
    # Stands in for the alerts, calls and orders of later migrations that point at residents.
    await runtime.pool.execute(
        """CREATE TABLE later_records (resident_id bigint REFERENCES residents(id));
           INSERT INTO later_records SELECT min(id) FROM residents"""
    )
    with pytest.raises(DemoFloorError, match="other records still refer to it"):
        await build_demo_floor(runtime, seed=2, replace=True)
    assert await residents_digest(runtime.pool) == before


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 8099, "http://127.0.0.1:8099"),
        ("0.0.0.0", 8080, "http://127.0.0.1:8080"),
        ("::", 8080, "http://[::1]:8080"),
        ("fd00::5", 9000, "http://[fd00::5]:9000"),
        ("127.0.0.1", 0, "http://127.0.0.1:8080"),
    ],
)
def test_the_demo_banner_names_the_address_serve_listens_on(host: str, port: int, expected: str) -> None:
    assert local_url(ServerConfig(host=host, port=port)) == expected
