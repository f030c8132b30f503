"""Rows for the service-lane tests, in plain SQL: a small catalogue, providers with their items
and areas, a subsidy programme."""

from __future__ import annotations

import datetime as dt
import itertools

from dispatch.database import Conn

# A Tuesday morning in Hohhot (UTC+8): 09:00 local.
T0 = dt.datetime(2026, 11, 24, 1, 0, tzinfo=dt.UTC)
HOME = (40.85, 111.70)

_serial = itertools.count(1)


async def catalogue(conn: Conn) -> None:
    """Three items: bathing (subsidised), cleaning (not), and an urgent lock repair."""
    await conn.execute(
        "INSERT INTO service_categories (code, name_zh, name_en) VALUES ('care', '养老护理', 'Care')"
    )
    await conn.executemany(
        """INSERT INTO service_items (code, category_code, name_zh, name_en, unit, unit_price_fen,
                                      subsidy_eligible, urgent)
           VALUES ($1, 'care', $2, $3, 'visit', $4, $5, $6)""",
        [
            ("bath", "助浴服务", "Bathing", 8000, True, False),
            ("clean", "家政保洁", "Cleaning", 5000, False, False),
            ("lock", "紧急开锁", "Emergency lock repair", 12000, True, True),
        ],
    )


async def provider(
    conn: Conn,
    *,
    name: str,
    sms: str | None = None,
    lat: float | None = 40.86,
    lon: float | None = 111.71,
    items: tuple[str, ...] = ("bath", "clean", "lock"),
    districts: tuple[int, ...] = (),
    communities: tuple[int, ...] = (),
    capacity: int = 2,
    rating: float | None = None,
    status: str = "active",
) -> int:
    n = next(_serial)
    provider_id: int = await conn.fetchval(
        """INSERT INTO providers (licence_no, name, sms_e164, base_lat, base_lon, capacity, rating, status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
        f"91150100MB{n:08d}",
        name,
        sms or f"+86135{n:08d}",
        lat,
        lon,
        capacity,
        rating,
        status,
    )
    for item in items:
        await conn.execute(
            """INSERT INTO provider_items (provider_id, item_code, price_fen)
               SELECT $1, code, unit_price_fen FROM service_items WHERE code = $2""",
            provider_id,
            item,
        )
    for district in districts:
        await conn.execute(
            "INSERT INTO provider_areas (provider_id, district_id) VALUES ($1, $2)", provider_id, district
        )
    for community in communities:
        await conn.execute(
            "INSERT INTO provider_areas (provider_id, community_id) VALUES ($1, $2)", provider_id, community
        )
    return provider_id


async def programme(
    conn: Conn,
    resident_id: int,
    *,
    allowance_fen: int = 20000,
    coverage: int = 80,
    own_allowance: int | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO subsidy_programmes (code, name, monthly_allowance_fen, coverage_percent)
           VALUES ('GM', '政府购买服务', $1, $2)
           ON CONFLICT (code) DO UPDATE SET monthly_allowance_fen = $1, coverage_percent = $2""",
        allowance_fen,
        coverage,
    )
    await conn.execute(
        "UPDATE residents SET subsidy_programme = 'GM', monthly_allowance_fen = $2 WHERE id = $1",
        resident_id,
        own_allowance,
    )
