"""Monthly settlement of government-purchased services (政府购买服务结算): the workbook, and settling.

The month is the order's `subsidy_month`: the Asia/Shanghai month of the window's start, the
month whose allowance the order drew on. An order is in the month's settlement once confirmed
by the follow-up call (回访); settling moves it `confirmed → settled` through the order state
machine (an `order.settled` event each) with a settlement reference. Settling is idempotent:
a re-run settles only what was confirmed since, under the same reference, and the workbook of
a settled month shows both (each order with its state, reference and time of settlement).

The workbook (openpyxl) has four sheets: a summary; one row per provider and one per subsidy
programme (orders, service hours, amount, subsidy / co-pay / not covered, ratings); and the
evidence of every order (check-in and check-out with their source and time, every report of
them, the rating and the follow-up note). Money is in yuan with two decimals, times are local
(the sheet says which zone), ID numbers are masked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from tqdm import tqdm

from dispatch.database import Conn
from dispatch.events import DomainEvent
from dispatch.id_numbers import mask_id_number
from dispatch.orders import IllegalTransition, OrderState, transition
from dispatch.runtime import Runtime

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SETTLED_STATES = (OrderState.CONFIRMED.value, OrderState.SETTLED.value)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
MONEY = "#,##0.00"
WHEN = "yyyy-mm-dd hh:mm"


class BadMonth(ValueError):
    """Not a month such as 2026-11."""


def parse_month(text: str) -> dt.date:
    """'2026-11' → 2026-11-01; years 2000-2100."""
    match = _MONTH.fullmatch(text.strip())
    if match is None or not 2000 <= int(match[1]) <= 2100 or not 1 <= int(match[2]) <= 12:
        raise BadMonth(f"expected a month such as 2026-11, got {text[:20]!r}")
    return dt.date(int(match[1]), int(match[2]), 1)


def default_ref(month: dt.date) -> str:
    return f"JS{month:%Y%m}"


SETTLEMENT_ROWS = """
SELECT o.id, o.state, o.settlement_ref, o.settled_at, o.provider_id, p.name AS provider_name,
       p.licence_no, o.resident_id, r.name AS resident_name, r.id_number, o.item_code,
       i.name_zh AS item_zh, i.name_en AS item_en, o.window_start, o.window_end,
       o.checked_in_at, o.checked_in_source, o.checked_out_at, o.checked_out_source, o.service_seconds,
       o.price_fen, o.covered_fen, o.copay_fen, o.not_eligible_fen, o.subsidy_programme,
       sp.name AS programme_name, o.rating, o.follow_up_note, o.confirmed_at,
       coalesce((SELECT json_agg(json_build_object('kind', e.kind, 'source', e.source, 'at', e.at,
                                                   'actor', e.actor, 'call_id', e.call_id, 'note', e.note)
                                 ORDER BY e.id)
                 FROM order_visit_evidence e WHERE e.order_id = o.id), '[]'::json) AS evidence
FROM service_orders o
JOIN providers p ON p.id = o.provider_id
JOIN residents r ON r.id = o.resident_id
JOIN service_items i ON i.code = o.item_code
LEFT JOIN subsidy_programmes sp ON sp.code = o.subsidy_programme
WHERE o.subsidy_month = $1 AND o.state = ANY($2::text[])
ORDER BY o.provider_id, o.window_start, o.id
"""


@dataclass(frozen=True)
class SettlementRow:
    """One order as the workbook shows it."""

    id: int
    state: str
    settlement_ref: str | None
    settled_at: dt.datetime | None
    provider_id: int
    provider_name: str
    licence_no: str
    resident_id: int
    resident_name: str
    id_number_masked: str
    item_code: str
    item_zh: str
    item_en: str
    window_start: dt.datetime
    window_end: dt.datetime
    checked_in_at: dt.datetime | None
    checked_in_source: str | None
    checked_out_at: dt.datetime | None
    checked_out_source: str | None
    service_seconds: int | None
    price_fen: int
    covered_fen: int
    copay_fen: int
    not_eligible_fen: int
    subsidy_programme: str | None
    programme_name: str | None
    rating: int | None
    follow_up_note: str
    confirmed_at: dt.datetime | None
    evidence: list[dict[str, Any]]


async def settlement_rows(conn: Conn, month: dt.date) -> list[SettlementRow]:
    rows = await conn.fetch(SETTLEMENT_ROWS, month, list(SETTLED_STATES))
    result = []
    for row in rows:
        values = dict(row.items())
        values["id_number_masked"] = mask_id_number(values.pop("id_number"))
        evidence = values["evidence"]
        values["evidence"] = evidence if isinstance(evidence, list) else []
        result.append(SettlementRow(**values))
    return result


@dataclass(frozen=True)
class Settled:
    settled: list[int]
    events: list[DomainEvent]


async def settle_month(
    conn: Conn, month: dt.date, *, ref: str, actor: str, at: dt.datetime, progress: bool = False
) -> Settled:
    """Move the month's confirmed orders to settled (in the caller's transaction)."""
    ids = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM service_orders WHERE subsidy_month = $1 AND state = 'confirmed' ORDER BY id",
            month,
        )
    ]
    settled: list[int] = []
    events: list[DomainEvent] = []
    for order_id in tqdm(ids, disable=not progress, file=sys.stderr, unit=" orders", desc="settling"):
        try:
            moved = await transition(
                conn,
                order_id,
                "settle",
                actor=actor,
                at=at,
                value=ref,
                reason=f"monthly settlement {ref}",
                data={"settlement_ref": ref, "month": f"{month:%Y-%m}"},
            )
        except IllegalTransition:
            continue  # its follow-up turned it into a complaint meanwhile: not this month's to settle
        settled.append(order_id)
        events.append(moved.event)
    return Settled(settled, events)


# -- the workbook -----------------------------------------------------------------------------


def _yuan(fen: int) -> float:
    return round(fen / 100, 2)


def _hours(seconds: int | None) -> float:
    return round((seconds or 0) / 3600, 2)


def _local(value: dt.datetime | str | None, tz: ZoneInfo) -> dt.datetime | None:
    """Excel holds no time zone: the local wall time, to the second."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(tz).replace(tzinfo=None, microsecond=0)


@dataclass
class _Totals:
    orders: int = 0
    seconds: int = 0
    price_fen: int = 0
    covered_fen: int = 0
    copay_fen: int = 0
    not_eligible_fen: int = 0
    ratings: int = 0
    rating_sum: int = 0
    residents: set[int] | None = None

    def add(self, row: SettlementRow) -> None:
        self.orders += 1
        self.seconds += row.service_seconds or 0
        self.price_fen += row.price_fen
        self.covered_fen += row.covered_fen
        self.copay_fen += row.copay_fen
        self.not_eligible_fen += row.not_eligible_fen
        if row.rating is not None:
            self.ratings += 1
            self.rating_sum += row.rating
        if self.residents is None:
            self.residents = set()
        self.residents.add(row.resident_id)

    def cells(self) -> list[Any]:
        return [
            self.orders,
            _hours(self.seconds),
            _yuan(self.price_fen),
            _yuan(self.covered_fen),
            _yuan(self.copay_fen),
            _yuan(self.not_eligible_fen),
            round(self.rating_sum / self.ratings, 2) if self.ratings else None,
            self.ratings,
            len(self.residents or ()),
        ]


FIGURE_HEADERS = [
    "工单数 Orders",
    "服务时长(小时) Hours",
    "金额(元) Amount",
    "补贴(元) Subsidy",
    "自付(元) Co-pay",
    "非补贴(元) Not covered",
    "平均评分 Mean rating",
    "评分数 Ratings",
    "服务老人数 Residents",
]
# columns (1-based, after the leading key columns) holding yuan
_MONEY_FIGURES = (3, 4, 5, 6)

PROVIDER_HEADERS = ["服务商ID Provider id", "服务商 Provider", "统一社会信用代码 Licence", *FIGURE_HEADERS]
PROGRAMME_HEADERS = ["补贴项目代码 Programme", "补贴项目名称 Name", *FIGURE_HEADERS]
EVIDENCE_HEADERS = [
    "工单 Order",
    "状态 State",
    "结算编号 Settlement ref",
    "结算时间 Settled at",
    "服务商ID Provider id",
    "服务商 Provider",
    "老人 Resident",
    "身份证号 ID number",
    "服务项目 Item",
    "预约开始 Window start",
    "预约结束 Window end",
    "签到时间 Check-in",
    "签到方式 Check-in source",
    "签退时间 Check-out",
    "签退方式 Check-out source",
    "服务时长(小时) Hours",
    "金额(元) Amount",
    "补贴(元) Subsidy",
    "自付(元) Co-pay",
    "非补贴(元) Not covered",
    "补贴项目 Programme",
    "评分 Rating",
    "回访记录 Follow-up",
    "回访确认时间 Confirmed at",
    "凭证明细 Evidence reports",
]
SHEETS = ("汇总 Summary", "服务商 Providers", "补贴项目 Programmes", "服务凭证 Evidence")
NO_PROGRAMME = "（无补贴项目）"


def _header(sheet: Worksheet, headers: list[str]) -> None:
    sheet.append(headers)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for index, header in enumerate(headers, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(12, min(40, len(header) + 4))


def _formats(sheet: Worksheet, columns: Iterable[int], number_format: str) -> None:
    for column in columns:
        for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
            cell.number_format = number_format


def _evidence_text(reports: list[dict[str, Any]], tz: ZoneInfo) -> str:
    parts = []
    for report in reports:
        when = _local(report["at"], tz)
        call = f" call#{report['call_id']}" if report.get("call_id") else ""
        note = f" {report['note']}" if report.get("note") else ""
        parts.append(
            f"{report['kind']} {report['source']} {when:%Y-%m-%d %H:%M} {report['actor']}{call}{note}"
        )
    return "; ".join(parts)


def build_workbook(
    rows: list[SettlementRow],
    month: dt.date,
    *,
    tz: ZoneInfo,
    generated_at: dt.datetime,
    progress: bool = False,
) -> Workbook:
    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = SHEETS[0]
    providers: dict[int, tuple[str, str, _Totals]] = {}
    programmes: dict[str, tuple[str, _Totals]] = {}
    total = _Totals()
    refs: dict[str, int] = defaultdict(int)

    evidence = book.create_sheet(SHEETS[3])
    _header(evidence, EVIDENCE_HEADERS)
    for row in tqdm(rows, disable=not progress, file=sys.stderr, unit=" orders", desc="settlement"):
        total.add(row)
        providers.setdefault(row.provider_id, (row.provider_name, row.licence_no, _Totals()))[2].add(row)
        code = row.subsidy_programme or ""
        programmes.setdefault(code, (row.programme_name or NO_PROGRAMME, _Totals()))[1].add(row)
        refs[row.settlement_ref or "（未结算 not settled）"] += 1
        evidence.append(
            [
                row.id,
                row.state,
                row.settlement_ref,
                _local(row.settled_at, tz),
                row.provider_id,
                row.provider_name,
                row.resident_name,
                row.id_number_masked,
                f"{row.item_zh} {row.item_en} ({row.item_code})",
                _local(row.window_start, tz),
                _local(row.window_end, tz),
                _local(row.checked_in_at, tz),
                row.checked_in_source,
                _local(row.checked_out_at, tz),
                row.checked_out_source,
                _hours(row.service_seconds),
                _yuan(row.price_fen),
                _yuan(row.covered_fen),
                _yuan(row.copay_fen),
                _yuan(row.not_eligible_fen),
                row.subsidy_programme,
                row.rating,
                row.follow_up_note,
                _local(row.confirmed_at, tz),
                _evidence_text(row.evidence, tz),
            ]
        )
    _formats(evidence, (4, 10, 11, 12, 14, 24), WHEN)
    _formats(evidence, (17, 18, 19, 20), MONEY)

    by_provider = book.create_sheet(SHEETS[1], 1)
    _header(by_provider, PROVIDER_HEADERS)
    for provider_id, (name, licence, totals) in sorted(providers.items()):
        by_provider.append([provider_id, name, licence, *totals.cells()])
    by_provider.append(["合计 Total", None, None, *total.cells()])
    _formats(by_provider, (3 + c for c in _MONEY_FIGURES), MONEY)

    by_programme = book.create_sheet(SHEETS[2], 2)
    _header(by_programme, PROGRAMME_HEADERS)
    for code, (name, totals) in sorted(programmes.items(), key=lambda item: (item[0] == "", item[0])):
        by_programme.append([code or None, name, *totals.cells()])
    by_programme.append(["合计 Total", None, *total.cells()])
    _formats(by_programme, (2 + c for c in _MONEY_FIGURES), MONEY)

    summary.column_dimensions["A"].width = 32
    summary.column_dimensions["B"].width = 40
    for key, value in [
        ("结算月份 Month", f"{month:%Y-%m}"),
        ("时区 Time zone", tz.key),
        ("所含工单 Orders included", "已回访确认、已结算 confirmed, settled (服务月份 month of service)"),
        ("生成时间 Generated at", _local(generated_at, tz)),
        *zip(FIGURE_HEADERS, total.cells(), strict=True),
        *((f"结算编号 Settlement ref: {ref}", count) for ref, count in sorted(refs.items())),
    ]:
        summary.append([key, value])
    summary["B4"].number_format = WHEN
    for row_number in (7, 8, 9, 10):  # amount, subsidy, co-pay, not covered
        summary[f"B{row_number}"].number_format = MONEY
    return book


def workbook_bytes(book: Workbook) -> bytes:
    buffer = BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def save_workbook(book: Workbook, path: Path) -> None:
    book.save(path)


# -- the command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettlementReport:
    month: dt.date
    out: Path
    orders: int
    settled_now: list[int]
    ref: str | None
    price_fen: int
    covered_fen: int
    copay_fen: int

    def describe(self) -> str:
        settled = f"; {len(self.settled_now)} settled now as {self.ref}" if self.ref is not None else ""
        return (
            f"settlement {self.month:%Y-%m}: {self.orders} orders{settled}; "
            f"amount {_yuan(self.price_fen):.2f} yuan, subsidy {_yuan(self.covered_fen):.2f}, "
            f"co-pay {_yuan(self.copay_fen):.2f}; written to {self.out}"
        )


async def run_settlement(
    runtime: Runtime,
    month: dt.date,
    out: Path,
    *,
    settle: bool = False,
    ref: str | None = None,
    actor: str = "cli:report",
    progress: bool = False,
) -> SettlementReport:
    """Settle (when asked) and write the workbook in one transaction: a workbook that cannot be
    written settles nothing."""
    now = runtime.clock()
    ref = (ref or default_ref(month)) if settle else None
    async with runtime.pool.acquire() as conn, conn.transaction():
        settled = Settled([], [])
        if ref is not None:
            settled = await settle_month(conn, month, ref=ref, actor=actor, at=now, progress=progress)
        rows = await settlement_rows(conn, month)
        book = await asyncio.to_thread(
            build_workbook, rows, month, tz=runtime.tz, generated_at=now, progress=progress
        )
        await asyncio.to_thread(save_workbook, book, out)
    await runtime.bus.publish(*settled.events)
    return SettlementReport(
        month=month,
        out=out,
        orders=len(rows),
        settled_now=settled.settled,
        ref=ref,
        price_fen=sum(r.price_fen for r in rows),
        covered_fen=sum(r.covered_fen for r in rows),
        copay_fen=sum(r.copay_fen for r in rows),
    )
