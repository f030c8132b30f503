"""Health notes an operator reads aloud to a team: conditions, drugs, how the person gets about.

Prevalences are rough figures for Chinese people over 60 and rise with age,
so a 92-year-old's card looks different from a 63-year-old's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from itertools import accumulate


@dataclass(frozen=True)
class Condition:
    name: str
    prevalence: float  # at 60-69; older people have more
    medication: tuple[str, ...]


CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "高血压",
        0.45,
        ("硝苯地平控释片 30mg 每日一次", "苯磺酸氨氯地平片 5mg 每日一次", "缬沙坦胶囊 80mg 每日一次"),
    ),
    Condition(
        "糖尿病", 0.18, ("二甲双胍片 0.5g 每日三次", "阿卡波糖片 50mg 随餐", "门冬胰岛素 餐前皮下注射")
    ),
    Condition(
        "冠心病",
        0.12,
        ("阿司匹林肠溶片 100mg 每日一次", "单硝酸异山梨酯片 20mg 每日两次", "速效救心丸 随身携带"),
    ),
    Condition("慢阻肺", 0.08, ("噻托溴铵吸入剂 每日一次", "沙美特罗替卡松吸入剂 每日两次")),
    Condition("脑梗后遗症", 0.07, ("氯吡格雷片 75mg 每日一次", "阿托伐他汀钙片 20mg 每晚一次")),
    Condition("骨关节炎", 0.15, ("氨基葡萄糖胶囊 每日三次", "塞来昔布胶囊 疼痛时服")),
    Condition("骨质疏松", 0.10, ("碳酸钙D3片 每日一次", "阿仑膦酸钠片 每周一次")),
    Condition("心房颤动", 0.03, ("华法林钠片 2.5mg 每日一次（定期查凝血）", "利伐沙班片 10mg 每日一次")),
    Condition("帕金森病", 0.02, ("多巴丝肼片 每日三次",)),
    Condition("阿尔茨海默病", 0.03, ("盐酸多奈哌齐片 5mg 每晚一次",)),
    Condition("慢性肾病", 0.03, ("复方α-酮酸片 每日三次",)),
    Condition("白内障", 0.08, ("玻璃酸钠滴眼液 每日三次",)),
)

ALLERGIES: tuple[tuple[str, int], ...] = (
    ("", 82),
    ("青霉素过敏", 6),
    ("头孢类药物过敏", 3),
    ("磺胺类药物过敏", 3),
    ("阿司匹林过敏", 1),
    ("海鲜过敏", 3),
    ("花粉过敏", 2),
)

# (text, weight at 60-69, weight at 90+): frailty shifts the odds with age.
MOBILITY: tuple[tuple[str, int, int], ...] = (
    ("行动自如", 70, 10),
    ("行动缓慢", 18, 25),
    ("需拄拐杖", 7, 25),
    ("使用助行器", 3, 15),
    ("依靠轮椅", 1, 15),
    ("长期卧床", 1, 10),
)
COGNITION: tuple[tuple[str, int, int], ...] = (
    ("意识清楚", 85, 35),
    ("轻度记忆减退", 12, 40),
    ("中度认知障碍，需家属协助沟通", 2, 18),
    ("重度认知障碍", 1, 7),
)
NOTES: tuple[str, ...] = (
    "耳背，请大声慢速说话",
    "佩戴助听器",
    "视力差，看不清按键",
    "居住六楼无电梯",
    "家中养狗，上门请先电话联系",
    "备用钥匙放在对门邻居家",
    "子女每周末探望",
    "行动不便，开门需较长时间",
    "独自服药易忘，需提醒",
    "曾于冬季煤气中毒，注意通风",
)
MONGOLIAN_SPEAKER_NOTE = "习惯说蒙古语，普通话交流困难"

_DISABLED_MOBILITY = frozenset({"依靠轮椅", "长期卧床"})


@dataclass(frozen=True)
class Health:
    chronic_conditions: str
    medication: str
    allergies: str
    mobility: str
    cognition: str
    notes: str

    @property
    def disabled(self) -> bool:
        """Counts as 失能 for the disability care subsidy."""
        return self.mobility in _DISABLED_MOBILITY


@cache
def _odds_at(table: tuple[tuple[str, int, int], ...], age: int) -> tuple[tuple[str, ...], tuple[float, ...]]:
    old = min(max((age - 65) / 25, 0.0), 1.0)
    odds = accumulate(young * (1 - old) + aged * old for _, young, aged in table)
    return tuple(text for text, _, _ in table), tuple(odds)


def _by_age(rng: random.Random, table: tuple[tuple[str, int, int], ...], age: int) -> str:
    texts, odds = _odds_at(table, age)
    return rng.choices(texts, cum_weights=odds)[0]


def health_for(rng: random.Random, age: int, *, mongolian_speaker: bool) -> Health:
    factor = 1.0 + max(age - 65, 0) * 0.03
    conditions = [c for c in CONDITIONS if rng.random() < c.prevalence * factor]
    medication = [rng.choice(c.medication) for c in conditions]
    cognition = _by_age(rng, COGNITION, age)
    if any(c.name == "阿尔茨海默病" for c in conditions) and cognition == "意识清楚":
        cognition = "中度认知障碍，需家属协助沟通"
    notes = [rng.choice(NOTES)] if rng.random() < 0.25 else []
    if mongolian_speaker:
        notes.insert(0, MONGOLIAN_SPEAKER_NOTE)
    return Health(
        chronic_conditions="、".join(c.name for c in conditions),
        medication="；".join(medication),
        allergies=rng.choices([a for a, _ in ALLERGIES], [w for _, w in ALLERGIES])[0],
        mobility=_by_age(rng, MOBILITY, age),
        cognition=cognition,
        notes="；".join(notes),
    )
