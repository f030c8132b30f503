"""SMS texts: segment counting, and offers that fit in two segments whatever the values."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers import templates
from providers.job_links import make_token
from providers.jobs import PartyType
from providers.templates import Offer, job_offer, segments

TZ = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2025, 5, 3, 1, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("{" * 80, 1),  # extension characters cost two septets
        ("{" * 81, 2),
        ("中" * 70, 1),
        ("中" * 71, 2),
        ("中" * 134, 2),
        ("中" * 135, 3),
        ("a" * 69 + "é", 1),  # é is in GSM-7
        ("a" * 70 + "ê", 2),  # ê is not: the whole text becomes UCS-2
        ("😀" * 35, 1),  # outside the BMP: two UTF-16 units each
        ("😀" * 36, 2),
    ],
)
def test_segments(text: str, count: int) -> None:
    assert segments(text) == count


def link(public_url: str = "https://12349.huhhot.gov.cn") -> str:
    # a realistic token: a job id in the millions, a provider id in the thousands, a year ahead
    token = make_token(
        b"k" * 32,
        job_id=9_876_543,
        party_type=PartyType.PROVIDER,
        party_id=12_345,
        expires_at=dt.datetime(2026, 12, 31, tzinfo=dt.UTC),
    )
    return f"{public_url}/j/{token}"


LONG = Offer(
    code="48213",
    resident_name="欧阳秀兰",
    community="新城区海拉尔东路街道光明路社区第三居民小组",
    item="居家上门助浴（含洗头、修剪指甲、更换床单被罩）",
    window_start=START,
    window_end=START + dt.timedelta(hours=2),
    link=link(),
)


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_long_offer_fits_two_segments_and_keeps_code_link_and_instructions(language: str) -> None:
    text = job_offer(LONG, language=language, tz=TZ)
    assert segments(text) <= 2
    assert text.startswith("【12349】")
    assert LONG.link in text
    assert "欧阳秀兰" not in text
    assert "欧**" in text
    reply = "回复 1 48213 接单，2 48213 拒绝" if language == "zh-CN" else "Reply 1 48213 yes, 2 48213 no"
    assert reply in text
    assert "…" in text  # the long community and item were shortened
    assert "新" in text  # ... but something of them is left
    assert ("5月3日09:00-11:00" if language == "zh-CN" else "May 3 09:00-11:00") in text


def test_short_offer_is_untouched() -> None:
    offer = Offer("4821", "王秀兰", "光明路社区", "助浴", START, None, link("http://127.0.0.1:8080"))
    text = job_offer(offer, language="zh-CN", tz=TZ)
    assert text == (
        "【12349】新工单4821：王**，光明路社区，助浴，5月3日09:00。"
        f"详情{offer.link} 回复 1 4821 接单，2 4821 拒绝"
    )
    assert segments(text) == 2


@given(
    name=st.text(min_size=1, max_size=20),
    community=st.text(max_size=80),
    item=st.text(max_size=80),
    language=st.sampled_from(["zh-CN", "en"]),
)
def test_any_offer_fits(name: str, community: str, item: str, language: str) -> None:
    offer = Offer("4821", name, community, item, START, START + dt.timedelta(hours=1), link())
    text = job_offer(offer, language=language, tz=TZ)
    assert segments(text) <= 2
    assert offer.link in text
    assert "1 4821" in text
    assert "2 4821" in text


def test_a_public_url_too_long_for_two_segments_still_gives_the_code_and_link() -> None:
    offer = Offer("4821", "王秀兰", "光明路社区", "助浴", START, None, link("https://" + "x" * 120 + ".cn"))
    text = job_offer(offer, language="zh-CN", tz=TZ)
    assert segments(text) > 2
    assert offer.link in text
    assert "回复 1 4821 接单，2 4821 拒绝" in text
    assert not templates.offer_fits(offer.link, "4821", language="zh-CN")
    assert templates.offer_fits(link(), "4821", language="zh-CN")


def test_emergency_dispatch_keeps_the_address_and_fits_three_segments() -> None:
    text = templates.emergency_dispatch(
        code="7305",
        resident_name="张桂英",
        address="回民区中山西路街道通道南街社区12号楼3单元502室",
        condition="老人在家中卫生间摔倒，无法起身，意识清醒，自述右髋部疼痛，有高血压和糖尿病病史，独居",
        link=link(),
        language="zh-CN",
    )
    assert segments(text) <= 3
    assert "回民区中山西路街道通道南街社区12号楼3单元502室" in text
    assert "张**" in text
    for reply in ("1 7305", "3 7305", "9 7305"):
        assert reply in text


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_every_text_is_signed_and_help_fits_two_segments(language: str) -> None:
    texts = [
        templates.help_text(language=language),
        templates.unknown_reply(language=language),
        templates.ambiguous_reply(codes=["4821", "5930"], action_digit="1", language=language),
        templates.no_open_job(code="4821", language=language),
        templates.no_open_job(code=None, language=language),
        templates.reminder(
            code="4821", item="助浴", window_start=START, link=link(), language=language, tz=TZ
        ),
        templates.cancellation(code="4821", item="助浴", reason="老人已住院", language=language),
        templates.family_alert_raised(resident_name="王秀兰", language=language),
        templates.family_team_on_way(resident_name="王秀兰", team_name="新城区一队", language=language),
        templates.family_resolved(resident_name="王秀兰", outcome="hospital", language=language),
        templates.proof_of_service(
            resident_name="王秀兰",
            item="助浴",
            provider_name="康乐家政",
            started_at=START,
            ended_at=START + dt.timedelta(minutes=90),
            rating=5,
            language=language,
            tz=TZ,
        ),
    ]
    for text in texts:
        assert text.startswith(templates.SIGNATURE)
        assert segments(text) <= 3
    assert segments(texts[0]) <= 2
    assert "1 4821" in texts[2]


def test_proof_of_service_says_when_who_and_rating() -> None:
    text = templates.proof_of_service(
        resident_name="王秀兰",
        item="助浴",
        provider_name="康乐家政",
        started_at=START,
        ended_at=START + dt.timedelta(minutes=90),
        rating=4,
        language="zh-CN",
        tz=TZ,
    )
    assert text == "【12349】王秀兰已接受康乐家政提供的助浴服务，5月3日09:00-10:30。评价4分。"


def test_mask_name() -> None:
    assert templates.mask_name("王秀兰") == "王**"
    assert templates.mask_name("欧阳秀兰") == "欧**"
    assert templates.mask_name(" 李 ") == "李**"
    assert templates.mask_name("") == "**"
