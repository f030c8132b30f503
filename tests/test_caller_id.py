"""Caller identification in one query agrees with the registry's own lookups, number by number."""

from __future__ import annotations

from dispatch.database import Conn
from dispatch.devices import device_by_caller
from dispatch.phones import PhoneBook
from dispatch.residents import find_residents_by_phone
from dispatch.runtime import Runtime
from providers.registry import providers_by_phone
from providers.teams import find_team_contacts
from telephony.caller_id import _MOBILE_BLOCKS, Party, identify_numbers, normalised
from tests import factories

SHARED_LANDLINE = "+864716912345"
UNIT = "+8613900139000"
LONE_UNIT = "+8613900139001"
PROVIDER = "+8613500135000"
TEAM_DUTY = "+8613600136999"
TEAM_MEMBER = "+8613600136001"
NOBODY = "+8613000000000"


async def world(conn: Conn) -> dict[str, int]:
    district, community = await factories.community(conn)
    husband = await factories.resident(conn, community_id=community, name="王建国", phone=SHARED_LANDLINE)
    wife = await factories.resident(conn, community_id=community, name="李桂兰", phone="+8613800138000")
    await conn.execute(
        "INSERT INTO resident_phones (resident_id, e164, kind, position) VALUES ($1, $2, 'landline', 2)",
        wife,
        SHARED_LANDLINE,
    )
    owner = await factories.resident(conn, community_id=community, name="张玉梅")
    unit = await factories.device(conn, resident_id=owner, caller=UNIT)
    lone = await conn.fetchval(
        "INSERT INTO devices (serial, kind, caller_e164) VALUES ('GW-LONE', 'pendant', $1) RETURNING id",
        LONE_UNIT,
    )
    provider = await conn.fetchval(
        """INSERT INTO providers (licence_no, name, phone_e164, sms_e164)
           VALUES ('91150100MA0000000X', '青城家政', NULL, $1) RETURNING id""",
        PROVIDER,
    )
    team = await factories.team(conn, code="T9", district_ids=[district], lat=40.8, lon=111.7)
    await conn.execute("UPDATE emergency_teams SET phone_e164 = $2 WHERE id = $1", team, TEAM_DUTY)
    await conn.execute(
        "INSERT INTO team_members (team_id, name, phone_e164) VALUES ($1, '赵队员', $2)", team, TEAM_MEMBER
    )
    return {
        "husband": husband,
        "wife": wife,
        "owner": owner,
        "unit": unit,
        "lone": int(lone),
        "provider": int(provider),
        "team": team,
    }


async def test_one_query_agrees_with_the_registry(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as conn:
        ids = await world(conn)
        numbers = [SHARED_LANDLINE, UNIT, LONE_UNIT, PROVIDER, TEAM_DUTY, TEAM_MEMBER, NOBODY]
        found = await identify_numbers(conn, numbers)
        for number in numbers:
            identity = found[number]
            residents = await find_residents_by_phone(conn, number)
            device = await device_by_caller(conn, number)
            providers = await providers_by_phone(conn, number)
            teams = await find_team_contacts(conn, number)
            if residents:
                assert identity.party is Party.RESIDENT
                assert identity.resident_id in {r.id for r in residents}
            elif providers:
                assert (identity.party, identity.provider_id) == (Party.PROVIDER, providers[0].id)
            elif teams:
                assert (identity.party, identity.team_id) == (Party.TEAM, teams[0].team.id)
            else:
                assert identity.party is Party.UNKNOWN
            assert identity.device_id == (device.id if device else None)
            own = {r.id for r in residents if number in r.phones}
            assert set(identity.own_phone_of) == own

    assert set(found[SHARED_LANDLINE].own_phone_of) == {ids["husband"], ids["wife"]}
    assert (found[UNIT].resident_id, found[UNIT].device_id, found[UNIT].sos_device) == (
        ids["owner"],
        ids["unit"],
        True,
    )
    assert found[UNIT].own_phone_of == ()  # a unit's line is not the resident's own phone
    assert (found[LONE_UNIT].party, found[LONE_UNIT].device_id) == (Party.UNKNOWN, ids["lone"])
    assert found[LONE_UNIT].sos_device
    assert found[PROVIDER].provider_id == ids["provider"]
    assert found[TEAM_DUTY].team_id == found[TEAM_MEMBER].team_id == ids["team"]


def test_the_fast_reading_of_a_mobile_is_the_phone_books() -> None:
    """normalised() asks phonenumbers once per five-digit block of CN mobiles: across every block,
    a second number must get what the PhoneBook gives it."""
    book = PhoneBook()
    _MOBILE_BLOCKS.clear()
    for block in range(13000, 20000):
        first, second = f"{block}000000", f"{block}987654"
        assert normalised(book, first) == book.try_normalise(first)
        assert normalised(book, second) == book.try_normalise(second), second
    for raw in ["04716912345", "6912345", "+8613800138000", "12349", "anonymous"]:
        assert normalised(book, raw) == book.try_normalise(raw)
