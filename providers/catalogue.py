"""The service catalogue: categories (养老护理, 家政服务, …) and the items a resident can order.

Prices are in fen. An item's `unit_price_fen` is the list price; a provider
may offer it at its own price (`provider_items.price_fen`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from dispatch.database import Conn
from dispatch.validation import InvalidInput


class ItemUnit(StrEnum):
    VISIT = "visit"
    HOUR = "hour"
    MEAL = "meal"
    ITEM = "item"


@dataclass(frozen=True)
class Category:
    code: str
    name_zh: str
    name_en: str
    position: int = 0


@dataclass(frozen=True)
class Item:
    code: str
    category_code: str
    name_zh: str
    name_en: str
    unit: ItemUnit
    unit_price_fen: int
    subsidy_eligible: bool = False
    urgent: bool = False
    active: bool = True


def _category(row: asyncpg.Record) -> Category:
    return Category(
        code=row["code"], name_zh=row["name_zh"], name_en=row["name_en"], position=row["position"]
    )


ITEM_COLUMNS = "code, category_code, name_zh, name_en, unit, unit_price_fen, subsidy_eligible, urgent, active"


def _item(row: asyncpg.Record) -> Item:
    return Item(
        code=row["code"],
        category_code=row["category_code"],
        name_zh=row["name_zh"],
        name_en=row["name_en"],
        unit=ItemUnit(row["unit"]),
        unit_price_fen=row["unit_price_fen"],
        subsidy_eligible=row["subsidy_eligible"],
        urgent=row["urgent"],
        active=row["active"],
    )


async def list_categories(conn: Conn) -> list[Category]:
    rows = await conn.fetch(
        "SELECT code, name_zh, name_en, position FROM service_categories ORDER BY position, code"
    )
    return [_category(r) for r in rows]


async def get_category(conn: Conn, code: str) -> Category | None:
    row = await conn.fetchrow(
        "SELECT code, name_zh, name_en, position FROM service_categories WHERE code = $1", code
    )
    return _category(row) if row else None


async def list_items(conn: Conn, *, category: str | None = None, active_only: bool = True) -> list[Item]:
    rows = await conn.fetch(
        f"""SELECT {ITEM_COLUMNS} FROM service_items
            WHERE ($1::text IS NULL OR category_code = $1) AND (active OR NOT $2)
            ORDER BY category_code, code""",
        category,
        active_only,
    )
    return [_item(r) for r in rows]


async def get_item(conn: Conn, code: str) -> Item | None:
    row = await conn.fetchrow(f"SELECT {ITEM_COLUMNS} FROM service_items WHERE code = $1", code)
    return _item(row) if row else None


async def items_by_code(conn: Conn, codes: list[str]) -> dict[str, Item]:
    rows = await conn.fetch(f"SELECT {ITEM_COLUMNS} FROM service_items WHERE code = ANY($1::text[])", codes)
    return {r["code"]: _item(r) for r in rows}


# An identical re-upsert updates no row and so returns none: that is how "unchanged" is told apart.
UPSERT_CATEGORY = """
INSERT INTO service_categories (code, name_zh, name_en, position) VALUES ($1, $2, $3, $4)
ON CONFLICT (code) DO UPDATE SET name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en,
                                 position = EXCLUDED.position
WHERE (service_categories.name_zh, service_categories.name_en, service_categories.position)
      IS DISTINCT FROM (EXCLUDED.name_zh, EXCLUDED.name_en, EXCLUDED.position)
RETURNING code, name_zh, name_en, position
"""


async def upsert_category(conn: Conn, category: Category) -> tuple[Category, bool]:
    row = await conn.fetchrow(
        UPSERT_CATEGORY, category.code, category.name_zh, category.name_en, category.position
    )
    if row is not None:
        return _category(row), True
    stored = await get_category(conn, category.code)
    assert stored is not None
    return stored, False


UPSERT_ITEM = f"""
INSERT INTO service_items ({ITEM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (code) DO UPDATE SET
    category_code = EXCLUDED.category_code, name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en,
    unit = EXCLUDED.unit, unit_price_fen = EXCLUDED.unit_price_fen,
    subsidy_eligible = EXCLUDED.subsidy_eligible, urgent = EXCLUDED.urgent, active = EXCLUDED.active
WHERE (service_items.category_code, service_items.name_zh, service_items.name_en, service_items.unit,
       service_items.unit_price_fen, service_items.subsidy_eligible, service_items.urgent,
       service_items.active)
      IS DISTINCT FROM
      (EXCLUDED.category_code, EXCLUDED.name_zh, EXCLUDED.name_en, EXCLUDED.unit,
       EXCLUDED.unit_price_fen, EXCLUDED.subsidy_eligible, EXCLUDED.urgent, EXCLUDED.active)
RETURNING {ITEM_COLUMNS}
"""


async def upsert_item(conn: Conn, item: Item) -> tuple[Item, bool]:
    if item.unit_price_fen < 0:
        raise InvalidInput.one("unit_price_fen", "a price cannot be negative")
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                UPSERT_ITEM,
                item.code,
                item.category_code,
                item.name_zh,
                item.name_en,
                item.unit.value,
                item.unit_price_fen,
                item.subsidy_eligible,
                item.urgent,
                item.active,
            )
    except asyncpg.ForeignKeyViolationError:
        raise InvalidInput.one("category_code", f"no category {item.category_code!r}") from None
    if row is not None:
        return _item(row), True
    stored = await get_item(conn, item.code)
    assert stored is not None
    return stored, False
