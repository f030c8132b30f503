"""Names as they appear on a Hohhot care register.

Surnames are weighted roughly by national frequency, with the Shanxi-migrant
names common in Inner Mongolia (郝, 贾, 乔, 武, 闫) lifted a little. Given
names are those of people born 1925-1965 (桂英, 建国, 援朝 …) for residents
and of their children for contacts. Mongolian names are transcribed whole
(巴特尔, 其其格), sometimes behind an adopted one-character surname (包, 白, 云).
"""

from __future__ import annotations

import random
from itertools import accumulate


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _weighted(text: str) -> tuple[tuple[str, int], ...]:
    """Names run together with their weights ("王71 李70") keep the table readable."""
    return tuple((item[0], int(item[1:])) for item in text.split())


SURNAMES: tuple[tuple[str, int], ...] = _weighted(
    "王71 李70 张67 刘54 陈36 杨31 赵25 黄14 周16 吴14 徐13 孙15 胡11 朱10 高13 "
    "郭12 马12 何7 罗6 梁7 宋7 郑6 谢5 韩8 唐4 冯6 于7 董7 程5 曹6 袁4 许5 吕5 苏5 "
    "贾8 丁4 魏5 薛5 阎5 闫5 杜4 田5 任5 姜4 范4 石4 姚3 崔4 康4 郝8 乔5 武6 侯4 孟4 "
    "史3 白5 常3 贺4 尹2 段3 雷2 秦3 温3 牛3 卢3 霍2 云2 邢2 金3"
)
# The Hui quarter (回民区) carries the Hui surnames far more often.
HUI_SURNAMES: dict[str, int] = {"马": 60, "白": 15, "金": 10, "杨": 40, "李": 75}

MALE_ELDER: tuple[str, ...] = words(
    "建国 国强 志强 建华 国华 德明 福林 振华 保国 玉田 永祥 长海 文斌 "
    "树林 富贵 秉义 金山 宝山 学文 占山 满仓 有才 卫东 援朝 跃进 建军 "
    "庆丰 治国 连生 广义 世昌 玉林 万福 根生 德胜 凤岐 俊峰 忠 明 军 "
    "斌 玉明 志刚 天佑 继承 瑞 二虎 长青 立新 存厚 "
)
FEMALE_ELDER: tuple[str, ...] = words(
    "桂英 秀英 玉兰 淑珍 秀兰 桂兰 凤英 玉珍 淑芬 秀珍 桂芳 玉梅 凤兰 "
    "淑兰 秀芳 桂珍 玉凤 金花 翠兰 素珍 彩云 美英 丽华 红梅 爱华 春梅 "
    "冬梅 秀梅 兰英 月娥 巧云 荣 霞 萍 润梅 银花 改莲 二女 俊英 玉琴 "
)
MALE_YOUNGER: tuple[str, ...] = words(
    "伟 磊 军 勇 涛 晓东 志刚 海峰 鹏 浩 建军 强 文杰 宏伟 永刚 海军 少华 利民 晓军 亮 "
)
FEMALE_YOUNGER: tuple[str, ...] = words(
    "丽 静 海燕 红霞 丽娜 春燕 晓燕 敏 婷 艳 秀丽 晓红 丽萍 慧 娜 雪梅 建英 玉霞 小平 燕 "
)
MONGOLIAN_MALE: tuple[str, ...] = words(
    "巴特尔 苏和 额尔敦 那日苏 朝鲁 巴图 孟和 宝音 阿拉坦 布和 特木尔 "
    "哈斯 宝力道 吉日嘎拉 额尔德尼 达来 毕力格 "
)
MONGOLIAN_FEMALE: tuple[str, ...] = words(
    "其其格 乌云 斯琴 萨仁 图雅 娜仁 高娃 乌兰 塔娜 托娅 格日勒 萨日娜 "
    "斯琴高娃 乌云其其格 阿拉坦其其格 琪琪格 "
)
MONGOLIAN_SURNAMES: tuple[str, ...] = ("包", "白", "云", "奇", "鲍", "韩", "宝")

_PLAIN = tuple(s for s, _ in SURNAMES)
_PLAIN_ODDS = tuple(accumulate(w for _, w in SURNAMES))
_HUI_ODDS = tuple(accumulate(HUI_SURNAMES.get(s, w) for s, w in SURNAMES))


def surname(rng: random.Random, *, hui_quarter: bool = False) -> str:
    return rng.choices(_PLAIN, cum_weights=_HUI_ODDS if hui_quarter else _PLAIN_ODDS)[0]


def elder_name(rng: random.Random, sex: str, family: str) -> str:
    return family + rng.choice(MALE_ELDER if sex == "M" else FEMALE_ELDER)


def younger_name(rng: random.Random, sex: str, family: str) -> str:
    return family + rng.choice(MALE_YOUNGER if sex == "M" else FEMALE_YOUNGER)


def mongolian_name(rng: random.Random, sex: str) -> str:
    given = rng.choice(MONGOLIAN_MALE if sex == "M" else MONGOLIAN_FEMALE)
    if rng.random() < 0.4:
        return rng.choice(MONGOLIAN_SURNAMES) + given
    return given
