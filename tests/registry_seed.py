"""A small Hohhot for registry tests: two districts, four communities (one name used twice),
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
    haidong: int  # 新城区/海拉尔东路街道/海东路社区
    xingfu_xincheng: int  # 新城区/海拉尔东路街道/幸福社区
    xingfu_saihan: int  # 赛罕区/大学西路街道/幸福社区
    gongda: int  # 赛罕区/大学西路街道/工大社区


async def seed_geography(conn: Conn) -> Geo:
    """Names as in the demo floor (and the import templates), plus one community name used twice."""
    xincheng = await ensure_district(conn, "150102", "新城区", lat=40.865, lon=111.715)
    saihan = await ensure_district(conn, "150105", "赛罕区", lat=40.805, lon=111.770)
    hailaer = await ensure_street(conn, xincheng.id, "海拉尔东路街道")
    daxue = await ensure_street(conn, saihan.id, "大学西路街道")
    haidong = await ensure_community(conn, hailaer.id, "海东路社区", lat=40.851, lon=111.701)
    xingfu_x = await ensure_community(conn, hailaer.id, "幸福社区", lat=40.853, lon=111.705)
    xingfu_s = await ensure_community(conn, daxue.id, "幸福社区", lat=40.801, lon=111.690)
    gongda = await ensure_community(conn, daxue.id, "工大社区", lat=40.806, lon=111.688)
    return Geo(xincheng.id, saihan.id, haidong.id, xingfu_x.id, xingfu_s.id, gongda.id)


async def seed_catalogue(conn: Conn) -> None:
    await upsert_category(conn, Category("LC", "生活照料", "Personal care", 1))
    await upsert_category(conn, Category("HK", "家政服务", "Housekeeping", 2))
    await upsert_item(conn, Item("HK01", "HK", "日常保洁", "Routine cleaning", ItemUnit.HOUR, 4000))
    await upsert_item(conn, Item("HK02", "HK", "深度保洁", "Deep cleaning", ItemUnit.HOUR, 5000))
    await upsert_item(
        conn, Item("LC01", "LC", "助浴", "Assisted bathing", ItemUnit.VISIT, 6000, subsidy_eligible=True)
    )
    await ensure_subsidy_programme(conn, "GAOLING", "高龄老人服务补贴", 10000)


def id_number(birth: dt.date, sequence: int, *, area: str = "150102") -> str:
    """A valid ID number; an odd `sequence` is a man's, an even one a woman's."""
    first17 = f"{area}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def licence_number(n: int) -> str:
    """A valid unified social credit code (a company in Inner Mongolia, 1501xx)."""
    first17 = f"91150102MA0{n:06d}"
    return first17 + uscc_check_character(first17)
