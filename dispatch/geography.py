"""Districts (区), streets (街道) and communities (社区): where a resident lives, what a provider serves.

Community names repeat across a city (every district has its own 幸福社区), so
a bare name is only accepted when it names one place; otherwise the street or
district, or a path such as `新城区/海东路街道/光明社区`, tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from dispatch.database import Conn
from dispatch.validation import clean


class PlaceError(LookupError):
    """A place name or id that names no place, or more than one."""


@dataclass(frozen=True)
class District:
    id: int
    code: str
    name: str
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class Street:
    id: int
    district_id: int
    name: str


@dataclass(frozen=True)
class Community:
    id: int
    street_id: int
    name: str
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class Place:
    """A community with the names above it, as an operator reads an address."""

    community_id: int
    community: str
    street_id: int
    street: str
    district_id: int
    district: str

    @property
    def path(self) -> str:
        return f"{self.district}/{self.street}/{self.community}"


def _district(row: asyncpg.Record) -> District:
    return District(id=row["id"], code=row["code"], name=row["name"], lat=row["lat"], lon=row["lon"])


def _street(row: asyncpg.Record) -> Street:
    return Street(id=row["id"], district_id=row["district_id"], name=row["name"])


def _community(row: asyncpg.Record) -> Community:
    return Community(
        id=row["id"], street_id=row["street_id"], name=row["name"], lat=row["lat"], lon=row["lon"]
    )


def _place(row: asyncpg.Record) -> Place:
    return Place(
        community_id=row["community_id"],
        community=row["community"],
        street_id=row["street_id"],
        street=row["street"],
        district_id=row["district_id"],
        district=row["district"],
    )


async def list_districts(conn: Conn) -> list[District]:
    rows = await conn.fetch("SELECT id, code, name, lat, lon FROM districts ORDER BY code")
    return [_district(r) for r in rows]


async def get_district(conn: Conn, district_id: int) -> District | None:
    row = await conn.fetchrow("SELECT id, code, name, lat, lon FROM districts WHERE id = $1", district_id)
    return _district(row) if row else None


async def district_by_name(conn: Conn, name: str) -> District | None:
    """By name (新城区) or administrative code (150102)."""
    row = await conn.fetchrow(
        "SELECT id, code, name, lat, lon FROM districts WHERE name = $1 OR code = $1", clean(name)
    )
    return _district(row) if row else None


async def resolve_district(conn: Conn, ref: str | int) -> District:
    """A district by id, administrative code or name; PlaceError when there is none."""
    district = None
    if isinstance(ref, str):
        district = await district_by_name(conn, ref)
    key = as_id(ref, SERIAL_MAX)
    if district is None and key is not None:
        district = await get_district(conn, key)
    if district is None:
        raise PlaceError(f"no district {ref!r}")
    return district


SERIAL_MAX = 2**31 - 1
BIGSERIAL_MAX = 2**63 - 1


def as_id(ref: str | int, largest: int) -> int | None:
    """`ref` as a row id when it can be one (digits, in the column's range), else None."""
    text = str(ref) if isinstance(ref, int) else clean(ref)
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if 0 < number <= largest else None


async def get_community(conn: Conn, community_id: int) -> Community | None:
    row = await conn.fetchrow(
        "SELECT id, street_id, name, lat, lon FROM communities WHERE id = $1", community_id
    )
    return _community(row) if row else None


PLACES = """
SELECT c.id AS community_id, c.name AS community, s.id AS street_id, s.name AS street,
       d.id AS district_id, d.name AS district
FROM communities c JOIN streets s ON s.id = c.street_id JOIN districts d ON d.id = s.district_id
"""


async def place_of(conn: Conn, community_id: int) -> Place | None:
    row = await conn.fetchrow(PLACES + "WHERE c.id = $1", community_id)
    return _place(row) if row else None


async def find_places(
    conn: Conn, community: str, *, street: str | None = None, district: str | None = None
) -> list[Place]:
    """Every community of that name, narrowed by street and district names when given."""
    rows = await conn.fetch(
        PLACES
        + """WHERE c.name = $1 AND ($2::text IS NULL OR s.name = $2)
                 AND ($3::text IS NULL OR d.name = $3 OR d.code = $3)
             ORDER BY d.code, s.name, c.id""",
        clean(community),
        clean(street) or None,
        clean(district) or None,
    )
    return [_place(r) for r in rows]


def _describe(community: str, street: str | None, district: str | None) -> str:
    return "/".join(part for part in (clean(district), clean(street), clean(community)) if part)


async def resolve_community(
    conn: Conn, community: str, *, street: str | None = None, district: str | None = None
) -> Place:
    """The one community these names point at, or PlaceError saying why not."""
    places = await find_places(conn, community, street=street, district=district)
    where = _describe(community, street, district)
    if not places:
        raise PlaceError(f"no community {where!r}")
    if len(places) > 1:
        choices = ", ".join(p.path for p in places[:3])
        raise PlaceError(
            f"{where!r} names {len(places)} communities ({choices}); give the street or district"
        )
    return places[0]


async def resolve_community_ref(conn: Conn, ref: str | int) -> Place:
    """`ref` is an id, a name, or a path `district/street/community` (read right to left when shorter)."""
    if isinstance(ref, int) or clean(ref).isdigit():
        key = as_id(ref, SERIAL_MAX)
        place = await place_of(conn, key) if key is not None else None
        if place is None:
            raise PlaceError(f"no community with id {ref}")
        return place
    parts = [part.strip() for part in clean(ref).split("/")]
    if not all(parts) or len(parts) > 3:
        raise PlaceError(f"{ref!r} is not a community name or a path district/street/community")
    community, street, district = [*reversed(parts), None, None][:3]
    assert community is not None
    return await resolve_community(conn, community, street=street, district=district)


async def communities_matching(conn: Conn, ref: str | int) -> list[int]:
    """Ids of the communities `ref` may mean (for searching: a repeated name means all of them)."""
    if isinstance(ref, int) or clean(ref).isdigit() or "/" in clean(ref):
        return [(await resolve_community_ref(conn, ref)).community_id]
    ids = [place.community_id for place in await find_places(conn, ref)]
    if not ids:
        raise PlaceError(f"no community {clean(ref)!r}")
    return ids


async def ensure_district(
    conn: Conn, code: str, name: str, *, lat: float | None = None, lon: float | None = None
) -> District:
    row = await conn.fetchrow(
        """INSERT INTO districts (code, name, lat, lon) VALUES ($1, $2, $3, $4)
           ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon
           RETURNING id, code, name, lat, lon""",
        code,
        name,
        lat,
        lon,
    )
    assert row is not None
    return _district(row)


async def ensure_street(conn: Conn, district_id: int, name: str) -> Street:
    # DO UPDATE (to the same value) rather than DO NOTHING so that RETURNING always yields the row.
    row = await conn.fetchrow(
        """INSERT INTO streets (district_id, name) VALUES ($1, $2)
           ON CONFLICT (district_id, name) DO UPDATE SET name = EXCLUDED.name
           RETURNING id, district_id, name""",
        district_id,
        name,
    )
    assert row is not None
    return _street(row)


async def ensure_community(
    conn: Conn, street_id: int, name: str, *, lat: float | None = None, lon: float | None = None
) -> Community:
    row = await conn.fetchrow(
        """INSERT INTO communities (street_id, name, lat, lon) VALUES ($1, $2, $3, $4)
           ON CONFLICT (street_id, name) DO UPDATE SET lat = EXCLUDED.lat, lon = EXCLUDED.lon
           RETURNING id, street_id, name, lat, lon""",
        street_id,
        name,
        lat,
        lon,
    )
    assert row is not None
    return _community(row)
