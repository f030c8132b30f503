"""Rows for tests, inserted with plain SQL: the smallest world a test needs.

Coordinates are around Hohhot; phones and ID numbers are valid so that the
code under test treats them as real.
"""

from __future__ import annotations

import datetime as dt
import itertools

from dispatch.database import Conn
from dispatch.id_numbers import check_character

_serial = itertools.count(1)


async def community(
    conn: Conn, *, district: str = "新城区", name: str | None = None, lat: float = 40.85, lon: float = 111.70
) -> tuple[int, int]:
    """(district_id, community_id), creating the district and a street as needed."""
    n = next(_serial)
    district_id = await conn.fetchval(
        """INSERT INTO districts (code, name, lat, lon) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
        f"D{n}",
        district,
        lat,
        lon,
    )
    street_id = await conn.fetchval(
        """INSERT INTO streets (district_id, name) VALUES ($1, '测试街道')
           ON CONFLICT (district_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
        district_id,
    )
    community_id = await conn.fetchval(
        "INSERT INTO communities (street_id, name, lat, lon) VALUES ($1, $2, $3, $4) RETURNING id",
        street_id,
        name or f"测试社区{n}",
        lat,
        lon,
    )
    return int(district_id), int(community_id)


def id_number(birth: dt.date = dt.date(1945, 3, 7), seq: int | None = None) -> str:
    first17 = f"150102{birth:%Y%m%d}{(seq if seq is not None else next(_serial)) % 1000:03d}"
    return first17 + check_character(first17)


async def resident(
    conn: Conn,
    *,
    community_id: int,
    name: str = "王秀英",
    phone: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    contacts: list[tuple[str, str]] | None = None,
) -> int:
    n = next(_serial)
    resident_id = await conn.fetchval(
        """INSERT INTO residents (id_number, name, sex, birth_date, address, community_id, lat, lon,
                                  living_situation, chronic_conditions)
           VALUES ($1, $2, 'F', '1945-03-07', '测试路1号', $3, $4, $5, 'alone', '冠心病') RETURNING id""",
        id_number(seq=n),
        name,
        community_id,
        lat,
        lon,
    )
    await conn.execute(
        "INSERT INTO resident_phones (resident_id, e164, kind) VALUES ($1, $2, 'mobile')",
        resident_id,
        phone or f"+86139{n:08d}",
    )
    for position, (contact_name, contact_phone) in enumerate(contacts or [], start=1):
        await conn.execute(
            """INSERT INTO emergency_contacts (resident_id, position, name, relation, phone_e164)
               VALUES ($1, $2, $3, '女儿', $4)""",
            resident_id,
            position,
            contact_name,
            contact_phone,
        )
    return int(resident_id)


async def device(conn: Conn, *, resident_id: int | None, caller: str | None = None) -> int:
    n = next(_serial)
    return int(
        await conn.fetchval(
            """INSERT INTO devices (serial, kind, resident_id, caller_e164, dc09_account)
           VALUES ($1, 'home_unit', $2, $3, $4) RETURNING id""",
            f"GW-T{n:05d}",
            resident_id,
            caller,
            f"{n:06d}",
        )
    )


ALL_WEEK = [(day, dt.time(0), dt.time(0)) for day in range(1, 8)]


async def team(
    conn: Conn,
    *,
    code: str,
    district_ids: list[int],
    lat: float,
    lon: float,
    roster: list[tuple[int, dt.time, dt.time]] | None = None,
    members: list[str] | None = None,
) -> int:
    team_id = await conn.fetchval(
        """INSERT INTO emergency_teams (code, name, phone_e164, base_lat, base_lon)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        code,
        f"应急服务队{code}",
        f"+86137{next(_serial):08d}",
        lat,
        lon,
    )
    for district_id in district_ids:
        await conn.execute("INSERT INTO team_districts VALUES ($1, $2)", team_id, district_id)
    for weekday, starts, ends in ALL_WEEK if roster is None else roster:
        await conn.execute("INSERT INTO team_roster VALUES ($1, $2, $3, $4)", team_id, weekday, starts, ends)
    for i, phone in enumerate(members or [f"+86136{next(_serial):08d}"]):
        await conn.execute(
            "INSERT INTO team_members (team_id, name, phone_e164, role) VALUES ($1, $2, $3, $4)",
            team_id,
            f"队员{i + 1}",
            phone,
            "leader" if i == 0 else "member",
        )
    return int(team_id)
