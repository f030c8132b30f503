"""The registry on a real database: idempotent upserts, lookups by phone in every form, search."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dispatch.database import Conn
from dispatch.devices import (
    DeviceInput,
    DeviceKind,
    device_by_caller,
    device_by_cloud_id,
    device_by_dc09_account,
    device_by_serial,
    upsert_device,
)
from dispatch.geography import PlaceError, resolve_community_ref, resolve_district
from dispatch.phones import PhoneBook, PhoneNumberError
from dispatch.resident_input import LivingSituation, ResidentInput, Sex
from dispatch.residents import (
    find_residents_by_phone,
    get_resident,
    reveal_id_number,
    search_residents,
    upsert_resident,
)
from dispatch.users import Role, create_user
from dispatch.validation import InvalidInput
from providers.catalogue import Item, ItemUnit, get_item, upsert_item
from providers.provider_input import ItemOffer, ProviderInput, ProviderStatus, parse_licence_no
from providers.registry import (
    get_provider,
    provider_by_licence,
    providers_by_phone,
    search_providers,
    upsert_provider,
)
from providers.teams import (
    MemberRole,
    RosterSlot,
    TeamInput,
    TeamMember,
    find_team_contacts,
    get_team,
    on_duty,
    teams_covering,
    upsert_team,
)
from tests.registry_seed import Geo, id_number, licence_number, seed_catalogue, seed_geography

BOOK = PhoneBook("CN", "0471")
WANG = id_number(dt.date(1941, 3, 9), 124)  # a woman born 1941-03-09


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    async with pool.acquire() as connection:
        yield connection


@pytest.fixture
async def geo(pool: asyncpg.Pool) -> Geo:
    async with pool.acquire() as connection:
        await seed_catalogue(connection)
        return await seed_geography(connection)


def wang(geo: Geo, **changes: object) -> ResidentInput:
    fields: dict[str, object] = {
        "id_number": WANG,
        "name": "王秀兰",
        "sex": "女",
        "phones": ["0471-6912345", "138 0013 8000"],
        "address": "海东路12号院3号楼2单元401",
        "community_id": geo.haidong,
        "lat": "40.8512",
        "lon": "111.7003",
        "living_situation": "独居",
        "chronic_conditions": "高血压、糖尿病",
        "medication": "二甲双胍",
        "subsidy_programme": "GAOLING",
        "contacts": [("李明", "儿子", "139 4710 0001"), ("", "", ""), ("李红", "女儿", "0471-6922222")],
    }
    fields.update(changes)
    return ResidentInput.build(BOOK, **fields)  # type: ignore[arg-type]


async def test_resident_upsert_is_idempotent(conn: Conn, geo: Geo) -> None:
    created, changed = await upsert_resident(conn, wang(geo))
    assert changed
    assert created.sex is Sex.FEMALE
    assert created.birth_date == dt.date(1941, 3, 9)
    assert created.living_situation is LivingSituation.ALONE
    assert created.id_number_masked == "150102********" + WANG[-4:]

    again, changed = await upsert_resident(conn, wang(geo))
    assert not changed
    assert again == created  # updated_at included: nothing was written

    moved, changed = await upsert_resident(conn, wang(geo, address="海东路14号"))
    assert changed
    assert moved.id == created.id
    assert moved.updated_at > created.updated_at
    assert moved.created_at == created.created_at


async def test_a_change_by_someone_is_logged_with_the_fields_not_their_values(conn: Conn, geo: Geo) -> None:
    created, _ = await upsert_resident(conn, wang(geo), actor="user:admin")
    await upsert_resident(conn, wang(geo), actor="user:admin")  # nothing changed: nothing logged
    await upsert_resident(conn, wang(geo, address="海东路14号", notes="左耳听力差"), actor="user:zhang")
    await upsert_resident(conn, wang(geo, address="海东路15号"))  # no actor (a test, a seed): not logged
    rows = await conn.fetch(
        "SELECT kind, actor, data FROM events WHERE subject_type = 'resident' AND subject_id = $1"
        " ORDER BY id",
        created.id,
    )
    assert [(r["kind"], r["actor"]) for r in rows] == [
        ("resident.created", "user:admin"),
        ("resident.updated", "user:zhang"),
    ]
    assert rows[1]["data"] == {"fields": ["address", "notes"]}
    assert "海东路" not in json.dumps([dict(r["data"]) for r in rows], ensure_ascii=False)


async def test_contacts_and_phones_keep_their_order(conn: Conn, geo: Geo) -> None:
    resident, _ = await upsert_resident(conn, wang(geo))
    card = await get_resident(conn, resident.id)
    assert card is not None
    assert [c.name for c in card.contacts] == ["李明", "李红"]
    assert [c.position for c in card.contacts] == [1, 2]
    assert [p.e164 for p in card.phones] == ["+864716912345", "+8613800138000"]
    assert [p.kind for p in card.phones] == ["landline", "mobile"]

    swapped = wang(geo, contacts=[("李红", "女儿", "0471-6922222"), ("李明", "儿子", "13947100001")])
    _, changed = await upsert_resident(conn, swapped)
    assert changed
    card = await get_resident(conn, resident.id)
    assert card is not None
    assert [(c.position, c.name, c.phone_e164) for c in card.contacts] == [
        (1, "李红", "+864716922222"),
        (2, "李明", "+8613947100001"),
    ]


async def test_card_names_the_place_and_hides_the_id_number(conn: Conn, geo: Geo) -> None:
    resident, _ = await upsert_resident(conn, wang(geo))
    card = await get_resident(conn, resident.id)
    assert card is not None
    assert card.place is not None
    assert card.place.path == "新城区/海拉尔东路街道/海东路社区"
    assert card.subsidy_programme_name == "高龄老人服务补贴"
    assert WANG not in repr(card)
    assert "+864716912345" not in repr(card)
    assert card.resident.age_on(dt.date(2026, 3, 8)) == 84
    assert card.resident.age_on(dt.date(2026, 3, 9)) == 85
    assert await get_resident(conn, resident.id + 1000) is None


async def test_only_an_admin_sees_the_id_number_and_it_is_logged(conn: Conn, geo: Geo) -> None:
    resident, _ = await upsert_resident(conn, wang(geo))
    operator = await create_user(conn, "op1", Role.OPERATOR)
    admin = await create_user(conn, "admin1", Role.ADMIN)
    with pytest.raises(PermissionError):
        await reveal_id_number(conn, resident.id, operator)
    assert await reveal_id_number(conn, resident.id, admin, reason="subsidy audit") == WANG
    events = await conn.fetch("SELECT kind, actor, reason FROM events WHERE subject_id = $1", resident.id)
    assert [tuple(e) for e in events] == [("id_number_revealed", "user:admin1", "subsidy audit")]


def test_input_reports_every_bad_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        ResidentInput.build(
            BOOK,
            id_number=WANG,
            name="",
            sex="男",
            phones=["12345"],
            lat="91",
            lon="111.7",
            living_situation="群居",
            contacts=[("", "儿子", "13947100001"), ("李红", "", "not a phone")],
        )
    fields = {e.field for e in caught.value.errors}
    assert fields == {"name", "sex", "phones", "lat", "living_situation", "contact1_name", "contact2_phone"}
    assert "woman" in str(caught.value)


def test_a_bad_id_number_is_named() -> None:
    bad = WANG[:-1] + ("0" if WANG[-1] != "0" else "1")
    with pytest.raises(InvalidInput) as caught:
        ResidentInput.build(BOOK, id_number=bad, name="王秀兰")
    assert [e.field for e in caught.value.errors] == ["id_number"]
    assert "check digit" in caught.value.errors[0].reason


async def test_unknown_subsidy_programme_is_a_field_error(conn: Conn, geo: Geo) -> None:
    with pytest.raises(InvalidInput) as caught:
        await upsert_resident(conn, wang(geo, subsidy_programme="NOPE"))
    assert [e.field for e in caught.value.errors] == ["subsidy_programme"]
    assert await conn.fetchval("SELECT count(*) FROM residents") == 0


@pytest.mark.parametrize(
    "typed",
    [
        "0471-6912345",
        "(0471)6912345",
        "04716912345",
        "6912345",
        "+86 471 6912345",
        "０４７１－６９１２３４５",
        "+86 138 0013 8000",
        "8613800138000",
        "13800138000",
        "１３８００１３８０００",
        "138-0013-8000",
    ],
)
async def test_resident_found_by_phone_in_any_form(conn: Conn, geo: Geo, typed: str) -> None:
    resident, _ = await upsert_resident(conn, wang(geo))
    await upsert_resident(
        conn, wang(geo, id_number=id_number(dt.date(1950, 1, 1), 11), name="赵四", sex="", phones=[])
    )
    found = await find_residents_by_phone(conn, BOOK.normalise(typed))
    assert [r.id for r in found] == [resident.id]
    page, total = await search_residents(conn, BOOK, phone=typed)
    assert ([r.id for r in page], total) == ([resident.id], 1)


async def test_resident_found_by_a_device_caller_number(conn: Conn, geo: Geo) -> None:
    resident, _ = await upsert_resident(conn, wang(geo))
    device = DeviceInput.build(
        BOOK, serial="HU-0001", kind="home_unit", resident_id=resident.id, caller="0471-6900001"
    )
    await upsert_device(conn, device)
    for typed in ("04716900001", "6900001", "+864716900001", "(0471) 690 0001"):
        found = await find_residents_by_phone(conn, BOOK.normalise(typed))
        assert [r.id for r in found] == [resident.id], typed
    page, total = await search_residents(conn, BOOK, phone="6900001")
    assert total == 1
    assert page[0].name == "王秀兰"
    card = await get_resident(conn, resident.id)
    assert card is not None
    assert [d.serial for d in card.devices] == ["HU-0001"]


async def test_a_shared_landline_finds_both_residents(conn: Conn, geo: Geo) -> None:
    her, _ = await upsert_resident(conn, wang(geo))
    him, _ = await upsert_resident(
        conn,
        wang(geo, id_number=id_number(dt.date(1939, 5, 1), 13), name="李大山", sex="", phones=["6912345"]),
    )
    found = await find_residents_by_phone(conn, "+864716912345")
    assert [r.id for r in found] == [her.id, him.id]
    assert await find_residents_by_phone(conn, "+864716999999") == []


async def test_search_by_name_fragment(conn: Conn, geo: Geo) -> None:
    names = ["王秀兰", "张秀兰", "张桂英", "秀兰", "刘100%"]
    for n, name in enumerate(names):
        await upsert_resident(
            conn, wang(geo, id_number=id_number(dt.date(1945, 1, 1), 2 * n + 2), name=name, phones=[])
        )
    page, total = await search_residents(conn, BOOK, name_fragment="秀兰")
    assert total == 3
    assert page[0].name == "秀兰"  # the exact name first
    assert {r.name for r in page} == {"王秀兰", "张秀兰", "秀兰"}

    page, total = await search_residents(conn, BOOK, name_fragment="张", limit=1, offset=1)
    assert total == 2
    assert len(page) == 1

    page, total = await search_residents(conn, BOOK, name_fragment="0%")
    assert [r.name for r in page] == ["刘100%"]
    page, total = await search_residents(conn, BOOK, name_fragment="%")
    assert total == 1
    _, total = await search_residents(conn, BOOK)
    assert total == 5


async def test_search_by_community(conn: Conn, geo: Geo) -> None:
    places = [geo.haidong, geo.xingfu_xincheng, geo.xingfu_saihan]
    for n, community_id in enumerate(places):
        await upsert_resident(
            conn,
            wang(
                geo, id_number=id_number(dt.date(1948, 2, 2), 2 * n + 2), community_id=community_id, phones=[]
            ),
        )
    _, total = await search_residents(conn, BOOK, community=geo.haidong)
    assert total == 1
    _, total = await search_residents(conn, BOOK, community=str(geo.haidong))
    assert total == 1
    page, total = await search_residents(conn, BOOK, community="幸福社区")
    assert total == 2
    assert {r.district for r in page} == {"新城区", "赛罕区"}
    page, total = await search_residents(conn, BOOK, community="赛罕区/大学西路街道/幸福社区")
    assert total == 1
    assert page[0].community == "幸福社区"
    page, total = await search_residents(conn, BOOK, community="幸福社区", name_fragment="王")
    assert total == 2
    with pytest.raises(PlaceError):
        await search_residents(conn, BOOK, community="不存在社区")
    with pytest.raises(PlaceError):
        await search_residents(conn, BOOK, community=99999)


async def test_search_refuses_a_phone_that_is_no_number(conn: Conn, geo: Geo) -> None:
    with pytest.raises(PhoneNumberError):
        await search_residents(conn, BOOK, phone="12a")


async def test_ambiguous_community_name_needs_a_path(conn: Conn, geo: Geo) -> None:
    with pytest.raises(PlaceError, match="2 communities"):
        await resolve_community_ref(conn, "幸福社区")
    place = await resolve_community_ref(conn, "大学西路街道/幸福社区")
    assert place.community_id == geo.xingfu_saihan
    assert (await resolve_district(conn, "150105")).id == geo.saihan
    assert (await resolve_district(conn, geo.xincheng)).name == "新城区"


async def test_devices_by_each_identifier(conn: Conn, geo: Geo) -> None:
    resident, _ = await upsert_resident(conn, wang(geo))
    unit = DeviceInput.build(
        BOOK,
        serial="HU-0002",
        kind="home_unit",
        resident_id=resident.id,
        caller="6900002",
        dc09_account="1A2B",
        cloud_id="cloud-42",
    )
    device, changed = await upsert_device(conn, unit)
    assert changed
    assert device.kind is DeviceKind.HOME_UNIT
    assert (await upsert_device(conn, unit)) == (device, False)
    assert await device_by_caller(conn, "+864716900002") == device
    assert await device_by_dc09_account(conn, "1A2B") == device
    assert await device_by_cloud_id(conn, "cloud-42") == device
    assert await device_by_serial(conn, "HU-0002") == device
    assert await device_by_caller(conn, "+864716900003") is None

    pendant = DeviceInput.build(BOOK, serial="PD-0001", kind="pendant", caller="0471 6900002")
    with pytest.raises(InvalidInput) as caught:
        await upsert_device(conn, pendant)
    assert [e.field for e in caught.value.errors] == ["caller"]
    with pytest.raises(InvalidInput):
        DeviceInput.build(BOOK, serial="PD-0002", kind="toaster")


def provider(geo: Geo, n: int = 1, **changes: object) -> ProviderInput:
    fields: dict[str, object] = {
        "licence_no": licence_number(n),
        "name": f"呼和浩特市康乐家政服务有限公司{n}",
        "contact_name": "刘经理",
        "sms": "139 4710 2001",
        "phone": "0471-6933001",
        "address": "新城区海拉尔东路8号",
        "lat": 40.85,
        "lon": 111.72,
        "capacity": "3",
        "items": "HK01:45;HK02",
        "areas": "新城区；赛罕区/大学西路街道/幸福社区",
    }
    fields.update(changes)
    return ProviderInput.build(BOOK, **fields)  # type: ignore[arg-type]


async def test_provider_upsert_is_idempotent(conn: Conn, geo: Geo) -> None:
    created, changed = await upsert_provider(conn, provider(geo))
    assert changed
    assert created.sms_e164 == "+8613947102001"
    assert (await upsert_provider(conn, provider(geo))) == (created, False)

    card = await get_provider(conn, created.id)
    assert card is not None
    assert [(i.item_code, i.price_fen) for i in card.items] == [("HK01", 4500), ("HK02", 5000)]
    assert [(a.district, a.community) for a in card.areas] == [("新城区", None), ("赛罕区", "幸福社区")]

    repriced, changed = await upsert_provider(conn, provider(geo, items="HK01:50;HK02"))
    assert changed
    assert repriced.updated_at > created.updated_at
    card = await get_provider(conn, created.id)
    assert card is not None
    assert [(i.item_code, i.price_fen) for i in card.items] == [("HK01", 5000), ("HK02", 5000)]
    assert await provider_by_licence(conn, licence_number(1)) == repriced


async def test_provider_input_errors(conn: Conn, geo: Geo) -> None:
    with pytest.raises(InvalidInput) as caught:
        await upsert_provider(conn, provider(geo, items="HK01;XX99", areas="新城区；火星区"))
    assert {e.field for e in caught.value.errors} == {"items", "areas"}
    assert "XX99" in str(caught.value)
    with pytest.raises(InvalidInput) as caught:
        provider(geo, licence_no=licence_number(1)[:-1] + "Z", sms="", capacity="-1", items="HK01:abc")
    assert {e.field for e in caught.value.errors} == {"licence_no", "sms", "capacity", "items"}
    assert parse_licence_no("9144030071526726xg") == "9144030071526726XG"
    assert parse_licence_no("150102000012345") == "150102000012345"


async def test_search_providers(conn: Conn, geo: Geo) -> None:
    await upsert_provider(conn, provider(geo, 1))
    await upsert_provider(
        conn, provider(geo, 2, items=[ItemOffer("LC01")], areas=["海东路社区"], sms="13947102002")
    )
    await upsert_provider(conn, provider(geo, 3, status="暂停", areas=["赛罕区"], sms="13947102003"))

    async def licences(**filters: object) -> list[str]:
        page, total = await search_providers(conn, **filters)  # type: ignore[arg-type]
        assert total == len(page)
        return [p.licence_no[-7:-1] for p in page]

    assert await licences() == ["000001", "000002", "000003"]
    assert await licences(status=ProviderStatus.SUSPENDED) == ["000003"]
    assert await licences(item_code="HK01") == ["000001", "000003"]
    assert await licences(item_code="LC01") == ["000002"]
    # provider 2 serves one community of 新城区, provider 1 a community of 赛罕区
    assert await licences(district_id=geo.xincheng) == ["000001", "000002"]
    assert await licences(district_id=geo.saihan) == ["000001", "000003"]
    assert await licences(district_id=geo.saihan, status=ProviderStatus.ACTIVE, item_code="HK02") == [
        "000001"
    ]
    assert await licences(name_fragment="康乐家政服务有限公司2") == ["000002"]
    page, total = await search_providers(conn, limit=1, offset=2)
    assert (len(page), total) == (1, 3)

    by_phone = await providers_by_phone(conn, BOOK.normalise("13947102002"))
    assert [p.licence_no for p in by_phone] == [licence_number(2)]
    assert [p.licence_no for p in await providers_by_phone(conn, "+864716933001")] == [
        licence_number(1),
        licence_number(2),
        licence_number(3),
    ]


async def test_catalogue_upsert_is_idempotent(conn: Conn, geo: Geo) -> None:
    item = await get_item(conn, "HK01")
    assert item is not None
    assert await upsert_item(conn, item) == (item, False)
    dearer = Item("HK01", "HK", "日常保洁", "Routine cleaning", ItemUnit.HOUR, 4500)
    assert await upsert_item(conn, dearer) == (dearer, True)
    with pytest.raises(InvalidInput):
        await upsert_item(conn, Item("ZZ01", "ZZ", "?", "?", ItemUnit.ITEM, 1))


async def test_teams_members_and_roster(conn: Conn, geo: Geo) -> None:
    team = TeamInput(
        code="T01",
        name="新城区应急服务一队",
        phone_e164="+864716955001",
        base_lat=40.86,
        base_lon=111.67,
        districts=("新城区", "150105"),
        members=(
            TeamMember("赵队长", "+8613947103001", MemberRole.LEADER),
            TeamMember("钱队员", "+8613947103002"),
        ),
        roster=(RosterSlot(5, dt.time(20), dt.time(8)), RosterSlot(1, dt.time(8), dt.time(20))),
    )
    created, changed = await upsert_team(conn, team)
    assert changed
    assert (await upsert_team(conn, team)) == (created, False)
    card = await get_team(conn, created.id)
    assert card is not None
    assert card.district_ids == (geo.xincheng, geo.saihan)
    assert [m.name for m in card.members] == ["赵队长", "钱队员"]
    assert [t.code for t in await teams_covering(conn, geo.saihan)] == ["T01"]

    contacts = await find_team_contacts(conn, "+8613947103002")
    assert [(c.team.code, c.member.name if c.member else None) for c in contacts] == [("T01", "钱队员")]
    contacts = await find_team_contacts(conn, "+864716955001")
    assert [(c.team.code, c.member) for c in contacts] == [("T01", None)]

    friday_night = dt.datetime(2026, 1, 9, 23, 0)  # a Friday
    assert on_duty(card.roster, friday_night)
    assert on_duty(card.roster, friday_night + dt.timedelta(hours=8, minutes=59))  # Saturday 07:59
    assert not on_duty(card.roster, friday_night + dt.timedelta(hours=9))  # Saturday 08:00
    assert not on_duty(card.roster, friday_night - dt.timedelta(hours=4))  # Friday 19:00

    smaller = dataclasses.replace(team, members=team.members[:1])
    assert (await upsert_team(conn, smaller))[1]
    card = await get_team(conn, created.id)
    assert card is not None
    assert [m.name for m in card.members] == ["赵队长"]
    with pytest.raises(InvalidInput):
        await upsert_team(conn, dataclasses.replace(team, districts=("火星区",)))
