"""Hohhot (呼和浩特): 9 districts, their streets and towns, and 289 communities.

The names follow the real city where we know them and are plausible elsewhere.
Places are fixed, whatever the demo seed: a street's position comes from its
own name, so every demo floor shows the same map and only the people change.
金桥开发区 is administered as part of 赛罕区 and appears here as one of its streets.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# How far (degrees) a community lies from its street's centre, and a village
# from its town's: a town's villages spread much wider than a city block.
_URBAN_SPREAD = 0.006
_VILLAGE_SPREAD = 0.035
_GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))


@dataclass(frozen=True)
class Street:
    name: str
    communities: tuple[str, ...]
    # Known towns are pinned; the others are placed around the district centre.
    centre: tuple[float, float] | None = None


@dataclass(frozen=True)
class District:
    code: str  # the 6-digit administrative code, also the ID-number prefix
    name: str
    abbr: str  # pinyin initials, for team codes
    centre: tuple[float, float]
    urban: bool
    streets: tuple[Street, ...]

    @property
    def community_count(self) -> int:
        return sum(len(s.communities) for s in self.streets)


@dataclass(frozen=True)
class Community:
    district: District
    street: Street
    name: str
    lat: float
    lon: float

    @property
    def village(self) -> bool:
        return self.name.endswith("村")


def _street(name: str, communities: str, centre: tuple[float, float] | None = None) -> Street:
    """Communities are written as stems: a village keeps its 村, anything else is a 社区."""
    names = tuple(c if c.endswith("村") else c + "社区" for c in communities.split())
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: duplicate community names")
    return Street(name, names, centre)


DISTRICTS: tuple[District, ...] = (
    District(
        "150102",
        "新城区",
        "XC",
        (40.865, 111.715),
        True,
        (
            _street("海拉尔东路街道", "海东路 光华街 满都海 呼伦南路 新春 东影南路"),
            _street("锡林郭勒北路街道", "锡林北路 八一 公园东路 北垣东街 苗圃 新华东街"),
            _street("东街街道", "东街 双树 东顺城街 北门 友谊"),
            _street("西街街道", "西街 落凤街 新城西街 北垣 宽巷子"),
            _street("中山东路街道", "中山东路 兴安南路 东门外 青山路 团结"),
            _street("东风路街道", "东风路 哲里木路 兴安北路 毫沁营 腾飞路"),
            _street("迎新路街道", "迎新路 车站东街 海拉尔北路 鸿盛 东站"),
            _street("丁香路街道", "丁香路 东二环 成吉思汗大街 恼包 西把栅"),
            _street(
                "保合少镇",
                "保合少村 奎素村 水磨村 讨号板村 陶卜齐村 羊盖板申村",
                (40.925, 111.805),
            ),
        ),
    ),
    District(
        "150103",
        "回民区",
        "HM",
        (40.830, 111.640),
        True,
        (
            _street("中山西路街道", "中山西路 公园西路 大北街 旧城北门 西顺城街 锡林南路 新华广场"),
            _street("环河街街道", "环河街 牛街 义和巷 南顺城街 宁武巷 庆凯桥 民族中学"),
            _street("通道街街道", "通道北街 通道南街 清真寺 营坊道 北马道巷 伊斯兰 西河沿"),
            _street("光明路街道", "光明路 果园东路 乌素图 县府街 巴彦淖尔南路 果园西路 西二环"),
            _street("新华西路街道", "新华西路 乌兰察布西路 阿拉善南路 石羊桥 兴盛 北马路 公主府"),
            _street("海拉尔西路街道", "海拉尔西路 西龙王庙 海西路 呼钢 金宇 巴彦淖尔北路 学府"),
            _street("钢铁路街道", "钢铁路 呼钢东路 南马路 工农兵路 东乌素图 西菜园 友谊巷"),
            _street(
                "攸攸板镇",
                "攸攸板村 东乌素图村 西乌素图村 坝口子村 东棚子村 西棚子村 古路板村 讨尔号村",
                (40.845, 111.545),
            ),
        ),
    ),
    District(
        "150104",
        "玉泉区",
        "YQ",
        (40.780, 111.665),
        True,
        (
            _street("大南街街道", "大召 席力图 大南街 通顺街 九龙湾 南茶坊"),
            _street("小召前街街道", "小召 五塔寺 观音庙 石头巷 西顺城 三官庙"),
            _street("长和廊街道", "长和廊 西菜园 清泉街 巧报 兴泰 南二环"),
            _street("石东路街道", "石东路 石羊桥东路 南茶坊东 桥华 工农兵路 电力"),
            _street("兴隆巷街道", "兴隆巷 太平街 福康 长胜 牛桥 南柴火市"),
            _street("鄂尔多斯路街道", "鄂尔多斯大街 锡林南路 南二环 兴泰南街 金地 青城南"),
            _street("昭君路街道", "昭君路 桃花 二十家 南湖 裕隆 城南"),
            _street(
                "小黑河镇",
                "小黑河村 辛辛板村 桃花板村 西菜园村 章盖营村 后桃花村 讨思浩村",
                (40.725, 111.640),
            ),
        ),
    ),
    District(
        "150105",
        "赛罕区",
        "SH",
        (40.805, 111.770),
        True,
        (
            _street("昭乌达路街道", "昭乌达路 展东路 敕勒川 丰州 南门外 锡林郭勒南路 兴安 恒大"),
            _street("大学东路街道", "大学东路 内大 南园 长乐宫 桥靠 二毛 东瓦窑 邮电"),
            _street("大学西路街道", "大学西路 工大 师大 农大 呼伦贝尔南路 新华 八拜 电建"),
            _street("乌兰察布东路街道", "乌兰察布东路 东达 康居 丰州南路 铁路 林场 东影 东方"),
            _street("中专路街道", "中专路 桥华世纪 塞上 世纪 石化 金隅 八一市场 团结"),
            _street("人民路街道", "人民路 如意 春华 腾飞南路 万达 新天地 府兴 巨海"),
            _street("敕勒川路街道", "敕勒川路 如意河 东二环 公安 西把栅 中海 万锦 青城"),
            _street(
                "巴彦街道",
                "巴彦 太平庄 东把栅村 大台什村 沙梁村 讨速号村 腮林村 添密梁村",
                (40.840, 111.830),
            ),
            _street("金桥开发区", "金桥 世纪七路 金海 恒安 鼎盛 金盛", (40.785, 111.820)),
            _street(
                "黄合少镇",
                "黄合少村 什兰岱村 美岱村 石人湾村 格此老村 东地村",
                (40.800, 111.920),
            ),
            _street(
                "榆林镇",
                "榆林村 阳坡窑村 古力半忽洞村 大厂库仑村 北什轴村 后窑村",
                (40.885, 111.950),
            ),
            _street("金河镇", "金河村 西讨速号村 南地村 根堡村 曙光村", (40.700, 111.780)),
        ),
    ),
    District(
        "150121",
        "土默特左旗",
        "TZ",
        (40.690, 111.160),
        False,
        (
            _street("察素齐镇", "察素齐 光明 城关 万家沟村", (40.690, 111.160)),
            _street("毕克齐镇", "毕克齐 三两村 讨合气村", (40.720, 111.320)),
            _street("白庙子镇", "白庙子村 古雁村"),
            _street("善岱镇", "善岱村 大岱村"),
            _street("台阁牧镇", "台阁牧村 把什村"),
        ),
    ),
    District(
        "150122",
        "托克托县",
        "TK",
        (40.280, 111.190),
        False,
        (
            _street("双河镇", "双河 新城 东城 燕山营村", (40.280, 111.190)),
            _street("新营子镇", "新营子村 黑水泉村"),
            _street("五申镇", "五申村 讨号板村"),
            _street("伍什家镇", "伍什家村 中滩村"),
            _street("古城镇", "古城村 新坪村"),
        ),
    ),
    District(
        "150123",
        "和林格尔县",
        "HL",
        (40.380, 111.820),
        False,
        (
            _street("城关镇", "城关 盛乐园 新华 东门外村", (40.380, 111.820)),
            _street("盛乐镇", "盛乐村 上土城村"),
            _street("新店子镇", "新店子村 大红城村"),
            _street("舍必崖乡", "舍必崖村 大圐圙村"),
        ),
    ),
    District(
        "150124",
        "清水河县",
        "QS",
        (39.910, 111.650),
        False,
        (
            _street("城关镇", "城关 新区 北堡村", (39.910, 111.650)),
            _street("喇嘛湾镇", "喇嘛湾村 老牛湾村"),
            _street("窑沟乡", "窑沟村"),
        ),
    ),
    District(
        "150125",
        "武川县",
        "WC",
        (41.100, 111.450),
        False,
        (
            _street("可可以力更镇", "可镇 新城 光明 东风村", (41.100, 111.450)),
            _street("哈乐镇", "哈乐村 二份子村"),
            _street("西乌兰不浪镇", "西乌兰不浪村"),
        ),
    ),
)

# Districts that share a border, for providers who work beyond their own.
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "新城区": ("回民区", "赛罕区", "武川县"),
    "回民区": ("新城区", "玉泉区", "土默特左旗"),
    "玉泉区": ("回民区", "赛罕区", "和林格尔县", "土默特左旗"),
    "赛罕区": ("新城区", "玉泉区", "和林格尔县"),
    "土默特左旗": ("回民区", "玉泉区", "托克托县", "武川县"),
    "托克托县": ("土默特左旗", "和林格尔县"),
    "和林格尔县": ("玉泉区", "赛罕区", "托克托县", "清水河县"),
    "清水河县": ("和林格尔县",),
    "武川县": ("新城区", "土默特左旗"),
}


def district_named(name: str) -> District:
    for district in DISTRICTS:
        if district.name == name:
            return district
    raise KeyError(name)


def _street_centre(district: District, index: int, street: Street) -> tuple[float, float]:
    if street.centre is not None:
        return street.centre
    place = random.Random(f"street:{district.code}:{street.name}")
    # Urban streets ring the district centre; rural towns lie out in the county.
    low, high = (0.008, 0.03) if district.urban else (0.08, 0.22)
    angle = index * _GOLDEN_ANGLE + place.uniform(-0.3, 0.3)
    distance = place.uniform(low, high)
    lat, lon = district.centre
    # A degree of longitude is shorter than one of latitude at 41°N.
    return lat + distance * math.sin(angle), lon + distance * math.cos(angle) / 0.76


def communities() -> list[Community]:
    """Every community, in a fixed order, with its position."""
    placed: list[Community] = []
    for district in DISTRICTS:
        for index, street in enumerate(district.streets):
            street_lat, street_lon = _street_centre(district, index, street)
            for name in street.communities:
                spot = random.Random(f"community:{district.code}:{street.name}:{name}")
                spread = _VILLAGE_SPREAD if name.endswith("村") else _URBAN_SPREAD
                placed.append(
                    Community(
                        district,
                        street,
                        name,
                        round(street_lat + spot.uniform(-spread, spread), 6),
                        round(street_lon + spot.uniform(-spread, spread) / 0.76, 6),
                    )
                )
    return placed
