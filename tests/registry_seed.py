"""A small Hohhot for registry tests: two districts, three communities (one name used twice),
a few catalogue items and a subsidy programme; valid ID numbers and licence numbers on demand."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dispatch.database import Conn
from dispatch.geography import ensure_community, ensure_district, ensure_street
from dispatch.id_numbers import check_character
from dispatch.subsidies import ensure_subsidy_programme
from providers.catalogue import Category, Item, ItemUnit, upsert_category, upsert_item
from providers.provider_input import uscc_check_character


@dataclass(frozen=True)
class Geo:
    xincheng: int  # 新城区
    saihan: int  # 赛罕区
    guangming: int  # 新城区/海东路街道/光明社区
    xingfu_xincheng: int  # 新城区/海东路街道/幸福社区
    xingfu_saihan: int  # 赛罕区/大学西路街道/幸福社区


async def seed_geography(conn: Conn) -> Geo:
    xincheng = await ensure_district(conn, "150102", "新城区", lat=40.86, lon=111.66)
    saihan = await ensure_district(conn, "150105", "赛罕区", lat=40.79, lon=111.70)
    haidong = await ensure_street(conn, xincheng.id, "海东路街道")
    daxue = await ensure_street(conn, saihan.id, "大学西路街道")
    guangming = await ensure_community(conn, haidong.id, "光明社区", lat=40.851, lon=111.701)
    xingfu_x = await ensure_community(conn, haidong.id, "幸福社区", lat=40.853, lon=111.705)
    xingfu_s = await ensure_community(conn, daxue.id, "幸福社区", lat=40.801, lon=111.690)
    return Geo(xincheng.id, saihan.id, guangming.id, xingfu_x.id, xingfu_s.id)


async def seed_catalogue(conn: Conn) -> None:
    await upsert_category(conn, Category("HK", "家政服务", "Housekeeping", 1))
    await upsert_category(conn, Category("YL", "养老护理", "Elderly care", 2))
    await upsert_item(conn, Item("HK01", "HK", "日常保洁", "Cleaning", ItemUnit.HOUR, 4000))
    await upsert_item(conn, Item("HK02", "HK", "擦玻璃", "Window cleaning", ItemUnit.VISIT, 6000))
    await upsert_item(
        conn, Item("YL01", "YL", "助浴", "Bathing help", ItemUnit.VISIT, 8000, subsidy_eligible=True)
    )
    await ensure_subsidy_programme(conn, "GOV-A", "居家养老服务补贴A类", 30000)


def id_number(birth: dt.date, sequence: int, *, area: str = "150102") -> str:
    """A valid ID number; an odd `sequence` is a man's, an even one a woman's."""
    first17 = f"{area}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def licence_number(n: int) -> str:
    """A valid unified social credit code (a company in Inner Mongolia, 1501xx)."""
    first17 = f"91150102MA0{n:06d}"
    return first17 + uscc_check_character(first17)
