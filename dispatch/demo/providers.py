"""Franchised providers (加盟服务商): who they are, what they sell, where they go.

Most are small: a family housekeeping firm with three staff serving its own
district. A few large care companies take twenty jobs at once and cross into
neighbouring districts; neighbourhood stations serve only a handful of
communities. Each district gets at least one provider before the rest are
spread by the number of communities.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from dispatch.demo.catalogue import Item, items_in
from dispatch.demo.geography import DISTRICTS, NEIGHBOURS, Community, District, district_named
from dispatch.demo.names import elder_name, surname, words, younger_name
from dispatch.demo.numbering import COMPANY, SOCIAL_ORGANISATION, Numbering

# A law firm's credit code is issued by the justice bureau (31).
LAW_FIRM = "31"


@dataclass(frozen=True)
class Kind:
    suffix: str
    registration: str
    categories: tuple[str, ...]  # the first is always offered
    weight: int
    only_items: tuple[str, ...] = ()


KINDS: tuple[Kind, ...] = (
    Kind("居家养老服务有限公司", COMPANY, ("LC", "HK", "ES", "MS"), 20),
    Kind("养老服务中心", SOCIAL_ORGANISATION, ("LC", "ES", "RH", "MN"), 18),
    Kind("家政服务有限公司", COMPANY, ("HK", "LC"), 20),
    Kind("家电维修服务部", COMPANY, ("AR",), 10),
    Kind("物业维修服务有限公司", COMPANY, ("AR", "HK"), 6),
    Kind("开锁服务部", COMPANY, ("AR",), 3, ("AR01", "AR13", "AR05")),
    Kind("餐饮管理有限公司", COMPANY, ("MS",), 10),
    Kind("医疗护理服务有限公司", COMPANY, ("MN", "RH"), 8),
    Kind("康复理疗中心", COMPANY, ("RH", "MN"), 5),
    Kind("社会工作服务中心", SOCIAL_ORGANISATION, ("ES", "LA", "LC"), 5),
    Kind("应急救援服务有限公司", COMPANY, ("ER", "AR"), 3),
    Kind("律师事务所", LAW_FIRM, ("LA",), 3),
)

BRANDS: tuple[str, ...] = words(
    "康乐 安馨 福寿 青城 塞上 敕勒川 草原 昭君 大召 德润 惠民 邻里 夕阳红 金色年华 颐和 乐龄 "
    "百合 爱心 万家 安居 鸿福 和顺 馨悦 仁和 瑞丰 乐康 松鹤 长青 祥和 润泽 正阳 阳光 "
    "星火 万福 康宁 安泰 吉祥 孝心 春晖 泰和 益民 众诚 恒信 诚信 利民 百姓 北疆 蒙欣"
)

_CAPACITY = (((1, 3), 40), ((4, 8), 35), ((9, 14), 17), ((15, 20), 8))


@dataclass(frozen=True)
class ProviderDraft:
    licence_no: str
    name: str
    contact_name: str
    phone_e164: str | None
    sms_e164: str
    address: str
    district: District
    base_lat: float
    base_lon: float
    capacity: int
    status: str
    rating: Decimal
    items: tuple[tuple[str, int], ...]  # (item code, price in fen)
    districts: tuple[District, ...]
    communities: tuple[Community, ...]


def _price(rng: random.Random, item: Item) -> int:
    # Providers set their own price around the list price, in whole yuan.
    return round(item.unit_price_fen * rng.uniform(0.85, 1.2) / 100) * 100


def _offer(rng: random.Random, kind: Kind) -> tuple[tuple[str, int], ...]:
    offered: list[Item] = []
    for index, category in enumerate(kind.categories):
        if index and rng.random() < 0.5:
            continue
        items = [i for i in items_in(category) if not kind.only_items or i.code in kind.only_items]
        chosen = [i for i in items if rng.random() < 0.7] or rng.sample(items, min(2, len(items)))
        offered += chosen
    return tuple((item.code, _price(rng, item)) for item in offered)


def _name(rng: random.Random, kind: Kind, district: District, taken: set[str]) -> str:
    while True:
        brand = rng.choice(BRANDS)
        if kind.registration == LAW_FIRM:
            name = f"内蒙古{brand}律师事务所"
        elif rng.random() < 0.4:
            name = f"呼和浩特市{district.name}{brand}{kind.suffix}"
        else:
            name = f"呼和浩特市{brand}{kind.suffix}"
        if name not in taken:
            taken.add(name)
            return name


def _home_districts(rng: random.Random, count: int) -> list[District]:
    weights = [d.community_count for d in DISTRICTS]
    homes = list(DISTRICTS[:count]) + rng.choices(DISTRICTS, weights, k=max(count - len(DISTRICTS), 0))
    rng.shuffle(homes)
    return homes


def make_providers(
    rng: random.Random,
    numbering: Numbering,
    places: Sequence[Community],
    count: int,
) -> list[ProviderDraft]:
    by_district: dict[str, list[Community]] = {}
    for place in places:
        by_district.setdefault(place.district.code, []).append(place)
    taken: set[str] = set()
    providers: list[ProviderDraft] = []
    for district in _home_districts(rng, count):
        kind = rng.choices(KINDS, [k.weight for k in KINDS])[0]
        local = by_district[district.code]
        base = rng.choice([p for p in local if not p.village] or local)
        (low, high) = rng.choices([c for c, _ in _CAPACITY], [w for _, w in _CAPACITY])[0]

        reach = rng.random()
        districts: tuple[District, ...] = ()
        communities: tuple[Community, ...] = ()
        if reach < 0.15:
            # A neighbourhood station: a few communities near its door.
            communities = tuple(rng.sample(local, min(len(local), rng.randint(3, 8))))
        elif reach < 0.35:
            neighbours = NEIGHBOURS[district.name]
            extra = rng.sample(neighbours, min(len(neighbours), rng.randint(1, 2)))
            districts = (district, *(district_named(n) for n in extra))
        else:
            districts = (district,)

        status = rng.choices(("active", "suspended", "inactive"), (92, 5, 3))[0]
        rating = rng.uniform(3.5, 5.0) if rng.random() < 0.9 else rng.uniform(2.6, 3.5)
        name = _name(rng, kind, district, taken)
        contact = elder_name(rng, "M", surname(rng)) if rng.random() < 0.3 else None
        providers.append(
            ProviderDraft(
                licence_no=numbering.credit_code(kind.registration, district.code),
                name=name,
                contact_name=contact or younger_name(rng, rng.choice("MF"), surname(rng)),
                phone_e164=numbering.landline() if rng.random() < 0.6 else None,
                sms_e164=numbering.mobile(),
                address=f"{district.name}{base.street.name}{base.name}底商{rng.randint(1, 60)}号",
                district=district,
                base_lat=round(base.lat + rng.uniform(-0.003, 0.003), 6),
                base_lon=round(base.lon + rng.uniform(-0.004, 0.004), 6),
                capacity=rng.randint(low, high),
                status=status,
                rating=Decimal(f"{rating:.2f}"),
                items=_offer(rng, kind),
                districts=districts,
                communities=communities,
            )
        )
    return providers
