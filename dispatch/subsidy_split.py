"""Who pays for an order: the subsidy programme, the resident's co-pay, and what no programme covers.

An eligible item ordered by a resident in a programme is paid `coverage_percent`
by the programme (rounded down to the fen; the resident pays the rest as co-pay),
as long as the month's allowance lasts: the part over what is left of it is not
covered (`not_eligible_fen`, like an item that is not eligible at all). The
allowance is the resident's own `monthly_allowance_fen` when set, else the
programme's; the month is the local month (Asia/Shanghai by default) of the
window's start, the day the service is given. Cancelled orders give their share
of the allowance back.

The split is worked out once, when the order is taken, under the resident's row
lock, so two orders taken at once cannot both spend the same allowance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from dispatch.database import Conn


@dataclass(frozen=True)
class SubsidySplit:
    price_fen: int
    covered_fen: int
    copay_fen: int
    not_eligible_fen: int
    programme: str | None
    month: dt.date
    allowance_fen: int
    allowance_left_fen: int
    # why the split is what it is, (zh, en) pairs for the operator and the resident
    reasons: tuple[tuple[str, str], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "price_fen": self.price_fen,
            "covered_fen": self.covered_fen,
            "copay_fen": self.copay_fen,
            "not_eligible_fen": self.not_eligible_fen,
            "programme": self.programme,
            "month": self.month.isoformat(),
            "allowance_fen": self.allowance_fen,
            "allowance_left_fen": self.allowance_left_fen,
            "reasons": [{"zh": zh, "en": en} for zh, en in self.reasons],
        }


def subsidy_month(at: dt.datetime, tz: ZoneInfo) -> dt.date:
    """The first day of the local month `at` falls in."""
    return at.astimezone(tz).date().replace(day=1)


def _yuan(fen: int) -> str:
    return f"{fen / 100:.2f}"


def split_price(
    price_fen: int,
    *,
    item_eligible: bool,
    programme: str | None,
    coverage_percent: int,
    allowance_fen: int,
    used_fen: int,
    month: dt.date,
) -> SubsidySplit:
    """The split of one order's price, given what this month's earlier orders already drew."""
    left = max(0, allowance_fen - used_fen)
    if programme is None or not item_eligible:
        why = (
            ("老人未参加补贴项目", "the resident is in no subsidy programme")
            if programme is None
            else ("该服务项目不在补贴范围", "the item is not eligible for subsidy")
        )
        return SubsidySplit(price_fen, 0, 0, price_fen, programme, month, allowance_fen, left, (why,))
    share = price_fen * coverage_percent // 100
    covered = min(share, left)
    copay = price_fen - share
    over = share - covered
    reasons = [
        (
            f"补贴 {coverage_percent}%，本月额度剩余 {_yuan(left)} 元",
            f"programme pays {coverage_percent}%, {_yuan(left)} yuan of the month's allowance left",
        )
    ]
    if over:
        reasons.append(
            (
                f"超出本月补贴额度 {_yuan(over)} 元，由老人自付",
                f"{_yuan(over)} yuan over the month's allowance, paid by the resident",
            )
        )
    return SubsidySplit(
        price_fen, covered, copay, over, programme, month, allowance_fen, left, tuple(reasons)
    )


RESIDENT_SUBSIDY = """
SELECT r.subsidy_programme, coalesce(r.monthly_allowance_fen, p.monthly_allowance_fen, 0) AS allowance,
       coalesce(p.coverage_percent, 0) AS coverage_percent
FROM residents r LEFT JOIN subsidy_programmes p ON p.code = r.subsidy_programme
WHERE r.id = $1
FOR UPDATE OF r
"""

ALLOWANCE_USED = """
SELECT coalesce(sum(covered_fen), 0) FROM service_orders
WHERE resident_id = $1 AND subsidy_month = $2 AND state <> 'cancelled'
"""


async def work_out_split(
    conn: Conn,
    *,
    resident_id: int,
    price_fen: int,
    item_eligible: bool,
    window_start: dt.datetime,
    tz: ZoneInfo,
) -> SubsidySplit:
    """The split for a new order, holding the resident's row lock until the caller's transaction ends."""
    row = await conn.fetchrow(RESIDENT_SUBSIDY, resident_id)
    if row is None:
        raise LookupError(f"resident {resident_id} not found")
    month = subsidy_month(window_start, tz)
    used = int(await conn.fetchval(ALLOWANCE_USED, resident_id, month))
    return split_price(
        price_fen,
        item_eligible=item_eligible,
        programme=row["subsidy_programme"],
        coverage_percent=int(row["coverage_percent"]),
        allowance_fen=int(row["allowance"]),
        used_fen=used,
        month=month,
    )
