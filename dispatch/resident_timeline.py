"""One resident's case file as one list: calls, calls Careline placed (care calls, callbacks, rating
and family calls), alarms, every event of the resident's alerts and orders (their transitions,
notes, escalations), and SMS to or from the resident's own phones and emergency contacts.

Each entry is a `TimelineEntry` (the events' own shape) with what it is about (`subject_type`,
`subject_id`) and a one-line summary in Chinese and English. Entries are ordered by time, then by
source, then by id; a page ends with a cursor (`TimelineCursor`) of its last entry, so the next
page starts exactly after it, however many entries share a second. Each source is read through
an index on (resident or phone, time), at most one page from each.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from dispatch.database import Conn
from dispatch.events import TimelineEntry
from telephony.alarms.kinds import KIND_NAMES

# Where an entry comes from; the number orders entries of the same instant.
SOURCES = {"call": 1, "call_attempt": 2, "alarm": 3, "event": 4, "sms": 5}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CURSOR = re.compile(r"(-?[0-9]{1,17})\.([1-5])\.([0-9]{1,19})")


class BadCursor(ValueError):
    """A cursor this module did not write."""


@dataclass(frozen=True, order=True)
class TimelineCursor:
    at: dt.datetime
    source: int
    id: int

    def encode(self) -> str:
        micros = (self.at - _EPOCH) // dt.timedelta(microseconds=1)
        return f"{micros}.{self.source}.{self.id}"

    @classmethod
    def decode(cls, text: str) -> TimelineCursor:
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise BadCursor("not a timeline cursor")
        try:
            at = _EPOCH + dt.timedelta(microseconds=int(match[1]))
        except OverflowError:
            raise BadCursor("not a timeline cursor") from None
        if int(match[3]) > 2**63 - 1:
            raise BadCursor("not a timeline cursor")
        return cls(at, int(match[2]), int(match[3]))


@dataclass(frozen=True)
class ResidentEntry:
    entry: TimelineEntry
    source: str
    subject_type: str
    subject_id: int
    summary: tuple[str, str]  # (zh, en)

    @property
    def cursor(self) -> TimelineCursor:
        return TimelineCursor(self.entry.occurred_at, SOURCES[self.source], self.entry.id)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.entry.as_json(),
            "source": self.source,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "link": LINKS[self.subject_type].format(id=self.subject_id)
            if self.subject_type in LINKS
            else None,
            "summary": {"zh": self.summary[0], "en": self.summary[1]},
        }


LINKS = {
    "call": "/api/v1/calls/{id}",
    "call_attempt": "/api/v1/calls/attempts/{id}",
    "alert": "/api/v1/alerts/{id}",
    "order": "/api/v1/orders/{id}",
}

# $1 resident, $2 since, $3 until, $4..$6 the cursor (at, source, id), $7 the page size.
# {cmp} and {dir} make the same query read backwards (newest first) or forwards.
_BRANCHES = """
(SELECT c.arrived_at AS at, 1 AS source, c.id, 'call' AS subject_type, c.id AS subject_id, 'call' AS kind,
        coalesce(c.operator, '') AS actor, NULL::text AS from_state, c.disposition AS to_state,
        coalesce(c.wait_reason, '') AS reason,
        jsonb_build_object('direction', c.direction, 'number',
                           CASE c.direction WHEN 'inbound' THEN c.caller_number ELSE c.called_number END,
                           'emergency', c.emergency, 'queue', c.queue, 'operator', c.operator,
                           'answered_at', c.answered_at, 'ended_at', c.ended_at,
                           'wait_seconds', c.wait_seconds, 'talk_seconds', c.talk_seconds,
                           'disposition', c.disposition, 'alert_id', c.alert_id, 'attempt_id', c.attempt_id,
                           'wait_reason', c.wait_reason) AS data
 FROM calls c
 WHERE c.resident_id = $1 AND {window:c.arrived_at} AND (c.arrived_at, 1, c.id) {cmp} ($4, $5, $6)
 ORDER BY c.arrived_at {dir}, c.id {dir} LIMIT $7)
UNION ALL
(SELECT a.created_at, 2, a.id, 'call_attempt', a.id, 'call_attempt', a.requested_by, a.state, a.result,
        a.reason,
        jsonb_build_object('purpose', a.purpose, 'target', a.target, 'state', a.state, 'result', a.result,
                           'digit', a.digit, 'finished_at', a.finished_at, 'call_id', a.call_id,
                           'alert_id', a.alert_id, 'for_type', a.subject_type, 'for_id', a.subject_id)
 FROM call_attempts a
 WHERE a.resident_id = $1 AND {window:a.created_at} AND (a.created_at, 2, a.id) {cmp} ($4, $5, $6)
 ORDER BY a.created_at {dir}, a.id {dir} LIMIT $7)
UNION ALL
(SELECT m.received_at, 3, m.id, 'alarm', m.id, 'alarm', m.sender, NULL, NULL, '',
        jsonb_build_object('alarm_kind', m.kind, 'qualifier', m.qualifier, 'protocol', m.source,
                           'code', m.code, 'zone', m.zone, 'outcome', m.outcome, 'alert_id', m.alert_id,
                           'device_id', m.device_id)
 FROM alarms m
 WHERE m.resident_id = $1 AND m.kind <> 'heartbeat' AND {window:m.received_at}
   AND (m.received_at, 3, m.id) {cmp} ($4, $5, $6)
 ORDER BY m.received_at {dir}, m.id {dir} LIMIT $7)
UNION ALL
(SELECT e.occurred_at, 4, e.id, e.subject_type, e.subject_id, e.kind, e.actor, e.from_state, e.to_state,
        e.reason, e.data
 FROM events e
 WHERE ((e.subject_type = 'alert' AND e.subject_id IN (SELECT id FROM alerts WHERE resident_id = $1))
        OR (e.subject_type = 'order'
            AND e.subject_id IN (SELECT id FROM service_orders WHERE resident_id = $1)))
   AND {window:e.occurred_at} AND (e.occurred_at, 4, e.id) {cmp} ($4, $5, $6)
 ORDER BY e.occurred_at {dir}, e.id {dir} LIMIT $7)
UNION ALL
(SELECT s.created_at, 5, s.id, 'sms', s.id, 'sms', '', NULL, s.status, coalesce(s.last_error, ''),
        jsonb_build_object('direction', s.direction, 'to', s.to_e164, 'from', s.from_e164, 'body', s.body,
                           'status', s.status, 'purpose', s.purpose, 'about_type', s.subject_type,
                           'about_id', s.subject_id, 'sent_at', s.sent_at)
 FROM sms_messages s
 WHERE ((s.direction = 'out' AND s.to_e164 = ANY($8::text[]))
        OR (s.direction = 'in' AND s.from_e164 = ANY($8::text[])))
   AND {window:s.created_at} AND (s.created_at, 5, s.id) {cmp} ($4, $5, $6)
 ORDER BY s.created_at {dir}, s.id {dir} LIMIT $7)
"""


def _query(newest_first: bool) -> str:
    cmp, direction = ("<", "DESC") if newest_first else (">", "ASC")
    branches = re.sub(
        r"\{window:([a-z]\.[a-z_]+)\}",
        lambda m: f"($2::timestamptz IS NULL OR {m[1]} >= $2) AND ($3::timestamptz IS NULL OR {m[1]} < $3)",
        _BRANCHES,
    ).format(cmp=cmp, dir=direction)
    return f"""SELECT * FROM ({branches}) t
               ORDER BY at {direction}, source {direction}, id {direction} LIMIT $7"""


NEWEST_FIRST = _query(True)
OLDEST_FIRST = _query(False)
# Beyond any real row: the first page's cursor.
_FAR_FUTURE = TimelineCursor(dt.datetime(9999, 1, 1, tzinfo=dt.UTC), 9, 2**63 - 1)
_FAR_PAST = TimelineCursor(dt.datetime(1, 1, 2, tzinfo=dt.UTC), 0, 0)


@dataclass(frozen=True)
class Phones:
    """The resident's own phones and the emergency contacts' (with their names)."""

    own: frozenset[str]
    contacts: dict[str, str]

    @property
    def all(self) -> list[str]:
        return sorted(self.own | set(self.contacts))


async def resident_phones(conn: Conn, resident_id: int) -> Phones | None:
    """None when there is no such resident."""
    rows = await conn.fetch(
        """SELECT 'own' AS whose, e164 AS phone, '' AS name FROM resident_phones WHERE resident_id = $1
           UNION ALL
           SELECT 'contact', phone_e164, name FROM emergency_contacts WHERE resident_id = $1
           UNION ALL
           SELECT 'resident', NULL, '' FROM residents WHERE id = $1""",
        resident_id,
    )
    if not any(r["whose"] == "resident" for r in rows):
        return None
    return Phones(
        own=frozenset(r["phone"] for r in rows if r["whose"] == "own"),
        contacts={r["phone"]: r["name"] for r in rows if r["whose"] == "contact"},
    )


async def resident_timeline(
    conn: Conn,
    resident_id: int,
    phones: Phones,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after: TimelineCursor | None = None,
    newest_first: bool = True,
    limit: int = 50,
) -> list[ResidentEntry]:
    """One page: entries past `after` (a previous page's last cursor) in the order asked for."""
    start = after or (_FAR_FUTURE if newest_first else _FAR_PAST)
    rows = await conn.fetch(
        NEWEST_FIRST if newest_first else OLDEST_FIRST,
        resident_id,
        since,
        until,
        start.at,
        start.source,
        start.id,
        limit,
        phones.all,
    )
    return [_entry(row, phones) for row in rows]


def _entry(row: asyncpg.Record, phones: Phones) -> ResidentEntry:
    source = next(name for name, number in SOURCES.items() if number == row["source"])
    data: dict[str, Any] = row["data"]
    entry = TimelineEntry(
        id=row["id"],
        occurred_at=row["at"],
        kind=row["kind"],
        actor=row["actor"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        reason=row["reason"],
        data=data,
    )
    summary = SUMMARIES[source](row, data, phones)
    return ResidentEntry(entry, source, row["subject_type"], row["subject_id"], summary)


# -- one line each, in Chinese and English ------------------------------------------------------


def _duration(seconds: int | None) -> tuple[str, str]:
    if seconds is None:
        return "?", "?"
    minutes, rest = divmod(int(seconds), 60)
    if not minutes:
        return f"{rest}秒", f"{rest} s"
    return f"{minutes}分{rest}秒", f"{minutes} min {rest} s"


def _call(row: asyncpg.Record, data: dict[str, Any], phones: Phones) -> tuple[str, str]:
    inbound = data["direction"] == "inbound"
    way_zh, way_en = ("来电", "Inbound call") if inbound else ("去电", "Outbound call")
    if data["emergency"]:
        way_zh, way_en = "紧急" + way_zh, "Emergency " + way_en[0].lower() + way_en[1:]
    wait_zh, wait_en = _duration(data["wait_seconds"])
    match data["disposition"]:
        case None if data["answered_at"] is None:
            return f"{way_zh}，振铃中", f"{way_en}, ringing"
        case None | "answered":
            talk_zh, talk_en = _duration(data["talk_seconds"])
            who = data["operator"] or "?"
            text = (
                f"{way_zh}，等待{wait_zh}后由坐席{who}接听，通话{talk_zh}",
                f"{way_en} answered by {who} after {wait_en}, talked {talk_en}",
            )
            if data["disposition"] is None:
                text = (f"{way_zh}，坐席{who}通话中", f"{way_en} in progress with {who}")
            return text
        case "abandoned":
            return f"{way_zh}，等待{wait_zh}后挂断（未接）", f"{way_en} abandoned after {wait_en}"
        case other:
            return f"{way_zh}，未接通（{other}）", f"{way_en} not connected ({other})"


_PURPOSES = {
    "callback": ("回拨", "Callback"),
    "care_call": ("关爱电话", "Care call"),
    "rating": ("回访评分电话", "Rating call"),
    "family": ("家属电话", "Family call"),
}
_RESULTS = {
    "answered": ("已接听", "answered"),
    "busy": ("占线", "busy"),
    "no_answer": ("无人接听", "no answer"),
    "failed": ("失败", "failed"),
    None: ("呼叫中", "ringing"),
}


def _attempt(row: asyncpg.Record, data: dict[str, Any], phones: Phones) -> tuple[str, str]:
    purpose = _PURPOSES.get(data["purpose"], (data["purpose"], data["purpose"]))
    result = _RESULTS.get(data["result"], (data["result"], data["result"]))
    digit = data["digit"]
    pressed = (f"，按键{digit}", f", pressed {digit}") if digit else ("", "")
    return f"{purpose[0]}：{result[0]}{pressed[0]}", f"{purpose[1]}: {result[1]}{pressed[1]}"


def _alarm(row: asyncpg.Record, data: dict[str, Any], phones: Phones) -> tuple[str, str]:
    zh, en = KIND_NAMES.get(data["alarm_kind"], (data["alarm_kind"], data["alarm_kind"]))
    restore = data["qualifier"] == "restore"
    return (
        f"报警：{zh}{'（恢复）' if restore else ''}",
        f"Alarm: {en}{' (restore)' if restore else ''}",
    )


_STATES = {
    # orders
    "new": "新建",
    "offered": "派单中",
    "accepted": "已接单",
    "in_service": "服务中",
    "completed": "已完成",
    "confirmed": "已回访确认",
    "settled": "已结算",
    "unfilled": "无人接单",
    "complaint": "投诉",
    # alerts
    "raised": "已触发",
    "acknowledged": "已受理",
    "team_dispatched": "已派应急队",
    "team_acknowledged": "应急队已确认",
    "on_scene": "已到场",
    "resolved": "已处置",
    "cancelled": "已取消",
}
_SUBJECTS = {"order": ("工单", "Order"), "alert": ("紧急求助", "Alert")}


def _event(row: asyncpg.Record, data: dict[str, Any], phones: Phones) -> tuple[str, str]:
    zh, en = _SUBJECTS.get(row["subject_type"], (row["subject_type"], row["subject_type"]))
    head_zh, head_en = f"{zh}#{row['subject_id']}", f"{en} #{row['subject_id']}"
    before, after = row["from_state"], row["to_state"]
    if after is not None and before != after:
        state_zh = _STATES.get(after, after)
        return f"{head_zh}：{state_zh}", f"{head_en}: {after.replace('_', ' ')}"
    what = row["kind"].split(".", 1)[-1].replace("_", " ")
    note = f" — {row['reason']}" if row["reason"] else ""
    return f"{head_zh}：{row['kind']}{note}", f"{head_en}: {what}{note}"


_SMS_STATUS = {
    "queued": "待发送",
    "sending": "发送中",
    "sent": "已发送",
    "delivered": "已送达",
    "failed": "发送失败",
    "undelivered": "未送达",
}


def _sms(row: asyncpg.Record, data: dict[str, Any], phones: Phones) -> tuple[str, str]:
    outbound = data["direction"] == "out"
    number = data["to"] if outbound else data["from"]
    if number in phones.own:
        who_zh, who_en = "老人", "the resident"
    else:
        name = phones.contacts.get(number, "")
        who_zh, who_en = f"家属{name}", f"family contact {name}".rstrip()
    body = data["body"]
    excerpt = body if len(body) <= 40 else body[:39] + "…"
    if outbound:
        status = data["status"]
        return (
            f"短信发给{who_zh}（{_SMS_STATUS.get(status, status)}）：{excerpt}",
            f"SMS to {who_en} ({status}): {excerpt}",
        )
    return f"{who_zh}来短信：{excerpt}", f"SMS from {who_en}: {excerpt}"


SUMMARIES = {"call": _call, "call_attempt": _attempt, "alarm": _alarm, "event": _event, "sms": _sms}
