"""SMS texts, zh-CN first and English alongside, chosen by the recipient's language.

Every text starts with the signature 【12349】. Chinese texts are sent as UCS-2:
70 characters in one segment, 67 in each part of a longer message; texts in
the GSM-7 alphabet get 160 and 153. `segments(text)` counts what an operator
pays for. A job offer must fit in two segments: when the values are long, the
variable parts (name, community, item) are shortened with "…" — never the
job code, the link or the reply instructions.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

SIGNATURE = "【12349】"
ELLIPSIS = "…"

# GSM 03.38 basic alphabet, and the extension table (each of those costs two septets).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def is_gsm7(text: str) -> bool:
    return all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text)


def segments(text: str) -> int:
    """How many SMS segments `text` is sent as (at least 1)."""
    if is_gsm7(text):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def mask_name(name: str) -> str:
    """王** — the family name and two stars, whatever the length, for texts leaving the building."""
    name = name.strip()
    return (name[0] + "**") if name else "**"


def is_english(language: str) -> bool:
    return language.lower().startswith("en")


def _clip(value: str, length: int) -> str:
    if len(value) <= length:
        return value
    return value[: max(0, length - 1)] + ELLIPSIS if length > 0 else ""


def fit(render: Callable[[dict[str, str]], str], parts: dict[str, str], max_segments: int) -> str:
    """Render, shortening the longest variable part a character at a time until it fits.

    When even empty parts do not fit (a very long public URL), the shortest
    rendering is returned, longer than asked, and a warning is logged: a job
    is never held back for its length (the start-up check in the SMS worker
    refuses such a URL).
    """
    current = dict(parts)
    text = render(current)
    while segments(text) > max_segments:
        name, value = max(current.items(), key=lambda item: len(item[1]), default=("", ""))
        if not value:
            log.warning("an SMS text needs %d segments, more than %d", segments(text), max_segments)
            return text
        current[name] = _clip(value, len(value) - 1) if len(value) > 1 else ""
        text = render(current)
    return text


def _when(at: dt.datetime, tz: ZoneInfo, english: bool) -> str:
    local = at.astimezone(tz)
    if english:
        return f"{local:%b} {local.day} {local:%H:%M}"
    return f"{local.month}月{local.day}日{local:%H:%M}"


def _window(start: dt.datetime, end: dt.datetime | None, tz: ZoneInfo, english: bool) -> str:
    text = _when(start, tz, english)
    if end is not None:
        text += f"-{end.astimezone(tz):%H:%M}"
    return text


@dataclass(frozen=True)
class Offer:
    code: str
    resident_name: str
    community: str
    item: str
    window_start: dt.datetime
    window_end: dt.datetime | None
    link: str


OFFER_MAX_SEGMENTS = 2


def job_offer(offer: Offer, *, language: str, tz: ZoneInfo) -> str:
    """A service job offered to a provider; at most two segments whatever the values."""
    english = is_english(language)
    when = _window(offer.window_start, offer.window_end, tz, english)
    code, link, name = offer.code, offer.link, mask_name(offer.resident_name)

    def render(p: dict[str, str]) -> str:
        what = [name, p["community"], p["item"], when]
        if english:
            return (
                f"{SIGNATURE}Job {code}: {', '.join(w for w in what if w)} "
                f"{link} Reply 1 {code} yes, 2 {code} no"
            )
        return (
            f"{SIGNATURE}新工单{code}：{'，'.join(w for w in what if w)}。"
            f"详情{link} 回复 1 {code} 接单，2 {code} 拒绝"
        )

    # the masked name, the time, the code, the link and the instructions are never shortened
    return fit(render, {"community": offer.community.strip(), "item": offer.item.strip()}, OFFER_MAX_SEGMENTS)


def offer_fits(link: str, code: str, *, language: str) -> bool:
    """Whether an offer with this link and code fits in two segments with the community and item
    at least a few characters long."""
    start = dt.datetime(2025, 12, 31, 1, 0, tzinfo=dt.UTC)
    offer = Offer(code, "王秀兰", "光明路社区", "助浴服务", start, start + dt.timedelta(hours=2), link)
    text = job_offer(offer, language=language, tz=ZoneInfo("Asia/Shanghai"))
    return segments(text) <= OFFER_MAX_SEGMENTS and "光明" in text and "助浴" in text


def reminder(
    *, code: str, item: str, window_start: dt.datetime, link: str, language: str, tz: ZoneInfo
) -> str:
    """Before an accepted job starts: when, what, and how to check in."""
    english = is_english(language)
    when = _when(window_start, tz, english)

    def render(p: dict[str, str]) -> str:
        if english:
            return f"{SIGNATURE}Reminder: job {code}, {p['item']}, {when}. {link} On arrival reply 3 {code}"
        return f"{SIGNATURE}提醒：工单{code}，{p['item']}，{when}开始。{link} 到达后回复 3 {code}"

    return fit(render, {"item": item.strip()}, 2)


def cancellation(*, code: str, item: str, reason: str, language: str) -> str:
    """A job taken back from a provider or team (cancelled, reassigned, taken by another)."""

    def render(p: dict[str, str]) -> str:
        if is_english(language):
            why = f" ({p['reason']})" if p["reason"] else ""
            return f"{SIGNATURE}Job {code} ({p['item']}) is cancelled{why}. No need to go. Thank you."
        why = f"，原因：{p['reason']}" if p["reason"] else ""
        return f"{SIGNATURE}工单{code}（{p['item']}）已取消{why}。无需上门，谢谢。"

    return fit(render, {"item": item.strip(), "reason": reason.strip()}, 2)


def emergency_dispatch(
    *, code: str, resident_name: str, address: str, condition: str, link: str, language: str
) -> str:
    """An emergency sent to a team: who, where, what, how to acknowledge. At most three segments;
    the condition summary is shortened before the address."""

    def render(p: dict[str, str]) -> str:
        if is_english(language):
            return (
                f"{SIGNATURE}EMERGENCY {code}: {p['name']}, {p['address']}. {p['condition']}. {link} "
                f"Reply 1 {code} received, 3 {code} arrived, 9 {code} done"
            )
        return (
            f"{SIGNATURE}紧急任务{code}：{p['name']}，{p['address']}。{p['condition']}。{link} "
            f"收到回复 1 {code}，到达回复 3 {code}，处理完回复 9 {code}"
        )

    parts = {"name": mask_name(resident_name), "address": address.strip(), "condition": condition.strip()}
    # shorten the condition to a short summary first: the address is what gets the team there
    if len(parts["condition"]) > 30:
        parts["condition"] = _clip(parts["condition"], 30)
    return fit(render, parts, 3)


OUTCOME_TEXT: dict[str, tuple[str, str]] = {
    "handled_at_home": ("已在家中妥善处理", "was taken care of at home"),
    "hospital": ("已送医院（120）", "was taken to hospital"),
    "false_alarm": ("经核实为误报，老人平安", "was a false alarm; all is well"),
    "no_access": ("救援人员未能入户，我们正在继续联系", "could not be reached at home; we keep trying"),
}


def family_alert_raised(*, resident_name: str, language: str) -> str:
    name = resident_name.strip()
    if is_english(language):
        return (
            f"{SIGNATURE}{name} has just called for help. The 12349 centre is handling it "
            "and will keep you informed. Questions: call 12349."
        )
    return (
        f"{SIGNATURE}您的家人{name}刚刚发出紧急求助，12349中心正在处理，进展会及时告知。如有疑问请拨12349。"
    )


def family_team_on_way(*, resident_name: str, team_name: str, language: str) -> str:
    name, team = resident_name.strip(), team_name.strip()
    if is_english(language):
        return f"{SIGNATURE}The emergency team {team} is on the way to {name}."
    return f"{SIGNATURE}应急服务队（{team}）已出发前往{name}处。"


def family_resolved(*, resident_name: str, outcome: str, language: str) -> str:
    name = resident_name.strip()
    zh, en = OUTCOME_TEXT.get(outcome, ("已处理完毕", "has been resolved"))
    if is_english(language):
        return f"{SIGNATURE}The call for help from {name} {en}. Questions: call 12349."
    return f"{SIGNATURE}{name}的紧急求助：{zh}。如有疑问请拨12349。"


def proof_of_service(
    *,
    resident_name: str,
    item: str,
    provider_name: str,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    rating: int | None,
    language: str,
    tz: ZoneInfo,
) -> str:
    """To the family: the service happened, when, by whom, and the resident's rating."""
    english = is_english(language)
    start = _when(started_at, tz, english)
    end = f"{ended_at.astimezone(tz):%H:%M}"
    if english:
        rated = f" Rating: {rating}/5." if rating is not None else ""
        return (
            f"{SIGNATURE}{resident_name.strip()} received {item.strip()} from {provider_name.strip()}, "
            f"{start}-{end}.{rated}"
        )
    rated = f"评价{rating}分。" if rating is not None else ""
    return (
        f"{SIGNATURE}{resident_name.strip()}已接受{provider_name.strip()}提供的{item.strip()}服务，"
        f"{start}-{end}。{rated}"
    )


def help_text(*, language: str) -> str:
    """The reply grammar, short enough for two segments."""
    if is_english(language):
        return (
            f"{SIGNATURE}Reply action + job code: 1 accept, 2 decline, 3 arrived, 9 done, "
            "e.g. 1 4821. With one open job the code may be left out."
        )
    return (
        f"{SIGNATURE}请回复“操作数字 空格 工单号”：1 接单，2 拒绝，3 已到达，9 已完成。"
        "例如 1 4821。只有一个工单时可只回数字。"
    )


def unknown_reply(*, language: str) -> str:
    """The reply could not be read: say so and give the grammar again."""
    if is_english(language):
        return f"{SIGNATURE}Could not read that. " + help_text(language=language).removeprefix(SIGNATURE)
    return f"{SIGNATURE}未能识别您的回复。" + help_text(language=language).removeprefix(SIGNATURE)


def ambiguous_reply(*, codes: list[str], action_digit: str, language: str) -> str:
    """Several open jobs and no code: which one?"""
    listed = "、".join(codes[:5]) if not is_english(language) else ", ".join(codes[:5])
    more = "…" if len(codes) > 5 else ""
    example = f"{action_digit} {codes[0]}" if codes else f"{action_digit} 4821"
    if is_english(language):
        return f"{SIGNATURE}You have several open jobs ({listed}{more}). Please add the code, e.g. {example}"
    return f"{SIGNATURE}您有多个进行中的工单（{listed}{more}），请带上工单号回复，例如 {example}"


def no_open_job(*, code: str | None, language: str) -> str:
    """Nothing to act on: the code is not one of the sender's open jobs, or there are none."""
    if is_english(language):
        if code:
            return f"{SIGNATURE}Job {code} is not open for you (finished, expired or taken). Call 12349."
        return f"{SIGNATURE}You have no open job right now. Questions: call 12349."
    if code:
        return f"{SIGNATURE}工单{code}不是您进行中的工单（可能已结束、过期或已被接走）。如有疑问请拨12349。"
    return f"{SIGNATURE}您目前没有进行中的工单。如有疑问请拨12349。"


def signed(text: str) -> str:
    """Add the signature unless the text already starts with it."""
    return text if text.startswith(SIGNATURE) else SIGNATURE + text
