"""Franchised providers (加盟服务商): who they are, what they offer at what price, where they serve.

A provider is keyed on its licence number (统一社会信用代码, or the older
15-digit registration number). Upserts change nothing, not even `updated_at`,
when the stored provider already says the same, so an import can be re-run.
Areas are whole districts or single communities; a provider serving a
community in a district is found when searching that district.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from dispatch.database import Conn
from dispatch.geography import PlaceError, district_by_name, resolve_community_ref
from dispatch.validation import Checker, clean
from providers.catalogue import items_by_code
from providers.provider_input import ItemOffer, ProviderInput, ProviderStatus


@dataclass(frozen=True)
class Provider:
    id: int
    licence_no: str
    name: str
    contact_name: str
    phone_e164: str | None = field(repr=False)
    sms_e164: str = field(repr=False)
    address: str
    base_lat: float | None
    base_lon: float | None
    capacity: int
    status: ProviderStatus
    rating: float | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class ProviderItem:
    item_code: str
    name_zh: str
    name_en: str
    category_code: str
    unit: str
    price_fen: int


@dataclass(frozen=True)
class ProviderArea:
    """A served district (community fields None) or a single served community."""

    district_id: int
    district: str
    community_id: int | None
    community: str | None


@dataclass(frozen=True)
class ProviderCard:
    provider: Provider
    items: tuple[ProviderItem, ...]
    areas: tuple[ProviderArea, ...]


PROVIDER_COLUMNS = """p.id, p.licence_no, p.name, p.contact_name, p.phone_e164, p.sms_e164, p.address,
    p.base_lat, p.base_lon, p.capacity, p.status, p.rating, p.created_at, p.updated_at"""


def _provider(row: asyncpg.Record) -> Provider:
    return Provider(
        id=row["id"],
        licence_no=row["licence_no"],
        name=row["name"],
        contact_name=row["contact_name"],
        phone_e164=row["phone_e164"],
        sms_e164=row["sms_e164"],
        address=row["address"],
        base_lat=row["base_lat"],
        base_lon=row["base_lon"],
        capacity=row["capacity"],
        status=ProviderStatus(row["status"]),
        rating=float(row["rating"]) if row["rating"] is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@dataclass(frozen=True)
class _Offer:
    """What a provider's stored offer is: items at resolved prices, areas as ids."""

    items: frozenset[tuple[str, int]]
    districts: frozenset[int]
    communities: frozenset[int]


async def check_offer(conn: Conn, items: Sequence[ItemOffer], areas: Sequence[str]) -> None:
    """InvalidInput (fields `items`, `areas`) if an item or area named does not exist."""
    await _resolve_offer(conn, items, areas)


async def _resolve_offer(conn: Conn, offers: Sequence[ItemOffer], areas: Sequence[str]) -> _Offer:
    checker = Checker()
    catalogue = await items_by_code(conn, [i.item_code for i in offers])
    unknown = [i.item_code for i in offers if i.item_code not in catalogue]
    if unknown:
        checker.fail("items", f"no such service item: {', '.join(unknown)}")
    items = frozenset(
        (i.item_code, catalogue[i.item_code].unit_price_fen if i.price_fen is None else i.price_fen)
        for i in offers
        if i.item_code in catalogue
    )
    districts: set[int] = set()
    communities: set[int] = set()
    for area in areas:
        district = await district_by_name(conn, area)
        if district is not None:
            districts.add(district.id)
            continue
        try:
            communities.add((await resolve_community_ref(conn, area)).community_id)
        except PlaceError as exc:
            checker.fail("areas", f"{exc} (and no district of that name)")
    checker.done()
    return _Offer(items, frozenset(districts), frozenset(communities))


async def _stored_offer(conn: Conn, provider_id: int) -> _Offer:
    items = await conn.fetch(
        "SELECT item_code, price_fen FROM provider_items WHERE provider_id = $1", provider_id
    )
    areas = await conn.fetch(
        "SELECT district_id, community_id FROM provider_areas WHERE provider_id = $1", provider_id
    )
    return _Offer(
        frozenset((r["item_code"], r["price_fen"]) for r in items),
        frozenset(r["district_id"] for r in areas if r["district_id"] is not None),
        frozenset(r["community_id"] for r in areas if r["community_id"] is not None),
    )


async def _write_offer(conn: Conn, provider_id: int, offer: _Offer) -> None:
    await conn.execute("DELETE FROM provider_items WHERE provider_id = $1", provider_id)
    await conn.execute("DELETE FROM provider_areas WHERE provider_id = $1", provider_id)
    items = sorted(offer.items)
    await conn.execute(
        """INSERT INTO provider_items (provider_id, item_code, price_fen)
           SELECT $1, code, price FROM unnest($2::text[], $3::bigint[]) AS i(code, price)""",
        provider_id,
        [code for code, _ in items],
        [price for _, price in items],
    )
    await conn.execute(
        """INSERT INTO provider_areas (provider_id, district_id, community_id)
           SELECT $1::bigint, d, NULL::int FROM unnest($2::int[]) AS d
           UNION ALL
           SELECT $1::bigint, NULL::int, c FROM unnest($3::int[]) AS c""",
        provider_id,
        sorted(offer.districts),
        sorted(offer.communities),
    )


INSERT_PROVIDER = f"""
INSERT INTO providers AS p (licence_no, name, contact_name, phone_e164, sms_e164, address, base_lat, base_lon,
                            capacity, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (licence_no) DO NOTHING
RETURNING {PROVIDER_COLUMNS}
"""

# Only rows that differ are updated, so `updated_at` moves only when something did.
UPDATE_PROVIDER = f"""
UPDATE providers AS p SET name = $2, contact_name = $3, phone_e164 = $4, sms_e164 = $5, address = $6,
    base_lat = $7, base_lon = $8, capacity = $9, status = $10, updated_at = now()
WHERE p.licence_no = $1
  AND (p.name, p.contact_name, p.phone_e164, p.sms_e164, p.address, p.base_lat, p.base_lon, p.capacity,
       p.status) IS DISTINCT FROM ($2, $3, $4, $5, $6, $7::float8, $8::float8, $9::int, $10)
RETURNING {PROVIDER_COLUMNS}
"""


async def upsert_provider(conn: Conn, provider: ProviderInput) -> tuple[Provider, bool]:
    """Create the provider with this licence number or bring it up to date; True if anything changed."""
    args = (
        provider.licence_no,
        provider.name,
        provider.contact_name,
        provider.phone_e164,
        provider.sms_e164,
        provider.address,
        provider.base_lat,
        provider.base_lon,
        provider.capacity,
        provider.status.value,
    )
    async with conn.transaction():
        offer = await _resolve_offer(conn, provider.items, provider.areas)
        row = await conn.fetchrow(INSERT_PROVIDER, *args)
        if row is not None:
            await _write_offer(conn, row["id"], offer)
            return _provider(row), True
        row = await conn.fetchrow(
            f"SELECT {PROVIDER_COLUMNS} FROM providers p WHERE p.licence_no = $1 FOR UPDATE",
            provider.licence_no,
        )
        assert row is not None
        changed = False
        updated = await conn.fetchrow(UPDATE_PROVIDER, *args)
        if updated is not None:
            row, changed = updated, True
        if await _stored_offer(conn, row["id"]) != offer:
            await _write_offer(conn, row["id"], offer)
            if not changed:
                row = await conn.fetchrow(
                    f"UPDATE providers p SET updated_at = now() WHERE p.id = $1 RETURNING {PROVIDER_COLUMNS}",
                    row["id"],
                )
                assert row is not None
            changed = True
        return _provider(row), changed


async def get_provider(conn: Conn, provider_id: int) -> ProviderCard | None:
    row = await conn.fetchrow(f"SELECT {PROVIDER_COLUMNS} FROM providers p WHERE p.id = $1", provider_id)
    if row is None:
        return None
    items = await conn.fetch(
        """SELECT pi.item_code, si.name_zh, si.name_en, si.category_code, si.unit, pi.price_fen
           FROM provider_items pi JOIN service_items si ON si.code = pi.item_code
           WHERE pi.provider_id = $1 ORDER BY si.category_code, pi.item_code""",
        provider_id,
    )
    areas = await conn.fetch(
        """SELECT coalesce(a.district_id, s.district_id) AS district_id, d.name AS district,
                  a.community_id, c.name AS community
           FROM provider_areas a
           LEFT JOIN communities c ON c.id = a.community_id
           LEFT JOIN streets s ON s.id = c.street_id
           JOIN districts d ON d.id = coalesce(a.district_id, s.district_id)
           WHERE a.provider_id = $1
           ORDER BY d.code, a.community_id NULLS FIRST, c.name""",
        provider_id,
    )
    return ProviderCard(
        provider=_provider(row),
        items=tuple(
            ProviderItem(
                item_code=r["item_code"],
                name_zh=r["name_zh"],
                name_en=r["name_en"],
                category_code=r["category_code"],
                unit=r["unit"],
                price_fen=r["price_fen"],
            )
            for r in items
        ),
        areas=tuple(
            ProviderArea(r["district_id"], r["district"], r["community_id"], r["community"]) for r in areas
        ),
    )


async def provider_input_of(conn: Conn, licence_no: str) -> ProviderInput | None:
    """The stored provider in input form, prices explicit and areas as names or district/street/community."""
    row = await conn.fetchrow(
        f"SELECT {PROVIDER_COLUMNS} FROM providers p WHERE p.licence_no = $1", licence_no
    )
    if row is None:
        return None
    items = await conn.fetch(
        "SELECT item_code, price_fen FROM provider_items WHERE provider_id = $1 ORDER BY item_code", row["id"]
    )
    areas = await conn.fetch(
        """SELECT coalesce(d.name, cd.name || '/' || s.name || '/' || c.name) AS area
           FROM provider_areas a
           LEFT JOIN districts d ON d.id = a.district_id
           LEFT JOIN communities c ON c.id = a.community_id
           LEFT JOIN streets s ON s.id = c.street_id
           LEFT JOIN districts cd ON cd.id = s.district_id
           WHERE a.provider_id = $1
           ORDER BY a.district_id NULLS LAST, a.community_id""",
        row["id"],
    )
    return ProviderInput(
        licence_no=row["licence_no"],
        name=row["name"],
        sms_e164=row["sms_e164"],
        contact_name=row["contact_name"],
        phone_e164=row["phone_e164"],
        address=row["address"],
        base_lat=row["base_lat"],
        base_lon=row["base_lon"],
        capacity=row["capacity"],
        status=ProviderStatus(row["status"]),
        items=tuple(ItemOffer(r["item_code"], r["price_fen"]) for r in items),
        areas=tuple(r["area"] for r in areas),
    )


async def provider_by_licence(conn: Conn, licence_no: str) -> Provider | None:
    row = await conn.fetchrow(
        f"SELECT {PROVIDER_COLUMNS} FROM providers p WHERE p.licence_no = $1", licence_no
    )
    return _provider(row) if row else None


async def providers_by_phone(conn: Conn, e164: str) -> list[Provider]:
    """Providers that text or call from this number (an SMS reply is matched to its sender this way)."""
    rows = await conn.fetch(
        f"""SELECT {PROVIDER_COLUMNS} FROM providers p WHERE p.sms_e164 = $1 OR p.phone_e164 = $1
            ORDER BY p.status = 'active' DESC, p.id""",
        e164,
    )
    return [_provider(r) for r in rows]


async def search_providers(
    conn: Conn,
    *,
    status: ProviderStatus | None = None,
    item_code: str | None = None,
    district_id: int | None = None,
    name_fragment: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Provider], int]:
    """A page of providers and how many match in all; `district_id` matches whole-district and
    single-community areas in that district."""
    conditions: list[str] = []
    args: list[object] = []
    if status is not None:
        args.append(status.value)
        conditions.append(f"p.status = ${len(args)}")
    if item_code:
        args.append(item_code)
        conditions.append(
            f"""EXISTS (SELECT 1 FROM provider_items i
                        WHERE i.provider_id = p.id AND i.item_code = ${len(args)})"""
        )
    if district_id is not None:
        args.append(district_id)
        conditions.append(
            f"""EXISTS (SELECT 1 FROM provider_areas a
                        LEFT JOIN communities c ON c.id = a.community_id
                        LEFT JOIN streets s ON s.id = c.street_id
                        WHERE a.provider_id = p.id
                          AND (a.district_id = ${len(args)} OR s.district_id = ${len(args)}))"""
        )
    if clean(name_fragment):
        escaped = clean(name_fragment).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args.append(f"%{escaped}%")
        conditions.append(f"p.name ILIKE ${len(args)}")
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    total: int = await conn.fetchval(f"SELECT count(*) FROM providers p {where}", *args)
    args.extend([limit, offset])
    rows = await conn.fetch(
        f"SELECT {PROVIDER_COLUMNS} FROM providers p {where} ORDER BY p.id "
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return [_provider(r) for r in rows], total
