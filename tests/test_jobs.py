"""Jobs by SMS: codes, routing a reply to the right job and handler, and the signed job page."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import pytest

from dispatch.database import Conn
from dispatch.runtime import Runtime
from dispatch.service import Service
from providers.inbound import RouteOutcome, route_reply
from providers.job_links import job_link, job_token, make_token, read_token
from providers.jobs import (
    Job,
    JobHandlers,
    PartyType,
    close_jobs,
    open_job,
    open_jobs_for,
)
from providers.replies import ReplyAction
from tests.sms_helpers import KIND, BusWatcher, Calls, add_provider, add_team, register_test_handler

PROVIDER_PHONE = "+8613900000001"
OTHER_PHONE = "+8613900000002"
MEMBER_PHONE = "+8613900000003"
STRANGER = "+8613900000999"


@pytest.fixture
def calls() -> Iterator[Calls]:
    record = register_test_handler(KIND)
    yield record
    JobHandlers.unregister(KIND)


def hours(n: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=n)


async def new_job(conn: Conn, party_type: PartyType, party_id: int, subject_id: int = 1, **kw: object) -> Job:
    return await open_job(
        conn,
        kind=str(kw.get("kind", KIND)),
        subject_type="order",
        subject_id=subject_id,
        party_type=party_type,
        party_id=party_id,
        expires_at=kw.get("expires_at", hours(2)),  # type: ignore[arg-type]
    )


@pytest.fixture
async def provider(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return await add_provider(conn, "康乐家政", PROVIDER_PHONE)


async def outbound(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM sms_messages WHERE direction = 'out' ORDER BY id")


# -- codes ------------------------------------------------------------------------------------


async def test_codes_are_four_digits_unique_among_open_jobs(pool: asyncpg.Pool, provider: int) -> None:
    async with pool.acquire() as conn:
        jobs = [await new_job(conn, PartyType.PROVIDER, provider, subject_id=i) for i in range(50)]
        assert all(re.fullmatch(r"[1-9][0-9]{3}", j.code) for j in jobs)
        assert len({j.code for j in jobs}) == 50
        # a closed job's code may be given again; an open one's never
        await conn.execute("UPDATE sms_jobs SET open = false, closed_at = now() WHERE id = $1", jobs[0].id)
        await conn.execute(
            """INSERT INTO sms_jobs (code, kind, subject_type, subject_id, party_type, party_id, expires_at)
               VALUES ($1, 'x', 'order', 1, 'provider', $2, now())""",
            jobs[0].code,
            provider,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                """INSERT INTO sms_jobs (code, kind, subject_type, subject_id, party_type, party_id,
                                         expires_at)
                   VALUES ($1, 'x', 'order', 1, 'provider', $2, now())""",
                jobs[1].code,
                provider,
            )


async def test_a_fifth_digit_when_four_are_all_taken(pool: asyncpg.Pool, provider: int) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO sms_jobs (code, kind, subject_type, subject_id, party_type, party_id, expires_at)
               SELECT g::text, 'x', 'order', g, 'provider', $1, now() + interval '1 day'
               FROM generate_series(1000, 9999) g""",
            provider,
        )
        job = await new_job(conn, PartyType.PROVIDER, provider)
    assert re.fullmatch(r"[1-9][0-9]{4}", job.code)


async def test_an_expired_job_gives_its_code_back(pool: asyncpg.Pool, provider: int) -> None:
    async with pool.acquire() as conn:
        old = await new_job(conn, PartyType.PROVIDER, provider, expires_at=hours(-1), subject_id=1)
        # the same random draw as the old job: its code is reclaimed, not widened
        rng = random.Random()
        rng.randrange = lambda *_: int(old.code)  # type: ignore[method-assign]
        new = await open_job(
            conn,
            kind=KIND,
            subject_type="order",
            subject_id=2,
            party_type="provider",
            party_id=provider,
            expires_at=hours(1),
            rng=rng,
        )
        assert new.code == old.code
        closed = await conn.fetchrow("SELECT open, close_reason FROM sms_jobs WHERE id = $1", old.id)
        assert closed is not None
        assert (closed["open"], closed["close_reason"]) == (False, "expired")
        assert [j.id for j in await open_jobs_for(conn, "provider", provider)] == [new.id]


async def test_close_jobs_for_a_subject_but_one(pool: asyncpg.Pool, provider: int) -> None:
    async with pool.acquire() as conn:
        other = await add_provider(conn, "安心养老", OTHER_PHONE)
        winner = await new_job(conn, PartyType.PROVIDER, provider, subject_id=7)
        loser = await new_job(conn, PartyType.PROVIDER, other, subject_id=7)
        unrelated = await new_job(conn, PartyType.PROVIDER, other, subject_id=8)
        closed = await close_jobs(
            conn, subject_type="order", subject_id=7, reason="taken", except_job_id=winner.id
        )
        assert [j.id for j in closed] == [loser.id]
        assert closed[0].close_reason == "taken"
        assert [j.id for j in await open_jobs_for(conn, PartyType.PROVIDER, other)] == [unrelated.id]


# -- routing replies --------------------------------------------------------------------------


async def test_reply_with_code_calls_the_handler_once_and_answers(
    runtime: Runtime, pool: asyncpg.Pool, provider: int, calls: Calls
) -> None:
    async with pool.acquire() as conn:
        job = await new_job(conn, PartyType.PROVIDER, provider)
        await new_job(conn, PartyType.PROVIDER, provider, subject_id=2)  # another open job: the code decides
    watcher = BusWatcher(runtime.bus)
    try:
        result = await route_reply(runtime, from_raw="13900000001", body=f"接 {job.code}", provider_sid="SM1")
        again = await route_reply(runtime, from_raw=PROVIDER_PHONE, body=f"接 {job.code}", provider_sid="SM1")
        await watcher.wait_for("test.accept")
        await watcher.wait_for("sms.received")
    finally:
        await watcher.close()
    assert result.outcome is RouteOutcome.ACTED
    assert result.job_id == job.id
    assert result.action is ReplyAction.ACCEPT
    assert calls.seen == [(job.id, ReplyAction.ACCEPT, f"provider:{provider}")]
    assert again.outcome is RouteOutcome.DUPLICATE
    assert again.message_id == result.message_id
    [answer] = await outbound(pool)
    assert answer["to_e164"] == PROVIDER_PHONE
    assert answer["body"] == f"【12349】工单{job.code}：已accept"
    assert (answer["purpose"], answer["subject_type"], answer["subject_id"]) == ("reply_ack", "order", 1)
    inbound = await pool.fetchrow("SELECT * FROM sms_messages WHERE id = $1", result.message_id)
    assert inbound is not None
    assert (inbound["direction"], inbound["status"], inbound["outcome"]) == ("in", "received", "acted")
    assert (inbound["from_e164"], inbound["job_id"], inbound["flagged"]) == (PROVIDER_PHONE, job.id, False)
    assert await pool.fetchval("SELECT count(*) FROM sms_messages WHERE direction = 'in'") == 1


async def test_code_left_out_with_one_open_job(
    runtime: Runtime, pool: asyncpg.Pool, provider: int, calls: Calls
) -> None:
    async with pool.acquire() as conn:
        job = await new_job(conn, PartyType.PROVIDER, provider)
    result = await route_reply(runtime, from_raw=PROVIDER_PHONE, body="２")
    assert result.outcome is RouteOutcome.ACTED
    assert calls.seen == [(job.id, ReplyAction.DECLINE, f"provider:{provider}")]


async def test_code_left_out_with_several_open_jobs_asks_which(
    runtime: Runtime, pool: asyncpg.Pool, provider: int, calls: Calls
) -> None:
    async with pool.acquire() as conn:
        first = await new_job(conn, PartyType.PROVIDER, provider, subject_id=1)
        second = await new_job(conn, PartyType.PROVIDER, provider, subject_id=2)
    result = await route_reply(runtime, from_raw=PROVIDER_PHONE, body="1")
    assert result.outcome is RouteOutcome.AMBIGUOUS
    assert calls.seen == []
    [answer] = await outbound(pool)
    assert first.code in answer["body"]
    assert second.code in answer["body"]
    assert f"1 {first.code}" in answer["body"]
    notice = await pool.fetchrow("SELECT * FROM notices WHERE kind = 'sms.ambiguous_reply'")
    assert notice is not None
    assert notice["data"]["job_ids"] == [first.id, second.id]


async def test_unknown_sender_is_stored_flagged_and_never_acted_on(
    runtime: Runtime, pool: asyncpg.Pool, provider: int, calls: Calls
) -> None:
    async with pool.acquire() as conn:
        job = await new_job(conn, PartyType.PROVIDER, provider)
    result = await route_reply(runtime, from_raw=STRANGER, body=f"1 {job.code}", provider_sid="SMx")
    assert result.outcome is RouteOutcome.UNKNOWN_SENDER
    assert calls.seen == []
    assert await outbound(pool) == []  # no answer to a number we do not know
    inbound = await pool.fetchrow("SELECT * FROM sms_messages WHERE id = $1", result.message_id)
    assert inbound is not None
    assert (inbound["flagged"], inbound["flag_reason"]) == (True, "unknown_sender")
    notice = await pool.fetchrow("SELECT * FROM notices WHERE kind = 'sms.unknown_sender'")
    assert notice is not None
    assert notice["subject_id"] == result.message_id
    assert "13900000999" not in notice["text"]


async def test_someone_elses_code_is_not_acted_on(
    runtime: Runtime, pool: asyncpg.Pool, provider: int, calls: Calls
) -> None:
    async with pool.acquire() as conn:
        other = await add_provider(conn, "安心养老", OTHER_PHONE)
        theirs = await new_job(conn, PartyType.PROVIDER, other)
    result = await route_reply(runtime, from_raw=PROVIDER_PHONE, body=f"1 {theirs.code}")
    assert result.outcome is RouteOutcome.NO_JOB
    assert calls.seen == []
    [answer] = await outbound(pool)
    assert f"工单{theirs.code}不是您进行中的工单" in answer["body"]


async def test_expired_job_is_not_acted_on(
    runtime: Runtime, pool: asyncpg.Pool, provider: int, calls: Calls
) -> None:
    async with pool.acquire() as conn:
        job = await new_job(conn, PartyType.PROVIDER, provider, expires_at=hours(-0.1))
    result = await route_reply(runtime, from_raw=PROVIDER_PHONE, body=f"1 {job.code}")
    assert result.outcome is RouteOutcome.NO_JOB
    assert calls.seen == []


async def test_team_member_acts_for_the_team(runtime: Runtime, pool: asyncpg.Pool, calls: Calls) -> None:
    async with pool.acquire() as conn:
        team = await add_team(conn, "新城区一队", "+8647169120001", {"李强": MEMBER_PHONE})
        member = await conn.fetchval("SELECT id FROM team_members WHERE team_id = $1", team)
        job = await new_job(conn, PartyType.TEAM, team)
    result = await route_reply(runtime, from_raw=MEMBER_PHONE, body=f"到{job.code}")
    assert result.outcome is RouteOutcome.ACTED
    assert calls.seen == [(job.id, ReplyAction.ARRIVED, f"team:{team}:member:{member}")]


async def test_unreadable_reply_gets_help_at_most_a_few_times_an_hour(
    runtime: Runtime, pool: asyncpg.Pool, provider: int, calls: Calls
) -> None:
    results = [await route_reply(runtime, from_raw=PROVIDER_PHONE, body="好的，马上到") for _ in range(5)]
    assert {r.outcome for r in results} == {RouteOutcome.UNPARSED}
    assert calls.seen == []
    answers = await outbound(pool)
    assert len(answers) == runtime.config.sms.help_replies_per_hour == 3
    assert all("未能识别您的回复" in a["body"] for a in answers)
    # an operator sees every one of them: the text may matter ("老人摔倒了")
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE kind = 'sms.unparsed_reply'") == 5
    flagged = await pool.fetchval("SELECT count(*) FROM sms_messages WHERE flag_reason = 'unparsed'")
    assert flagged == 5


async def test_a_failing_handler_keeps_the_message_and_tells_an_operator(
    runtime: Runtime, pool: asyncpg.Pool, provider: int, calls: Calls
) -> None:
    calls.fail = True
    async with pool.acquire() as conn:
        job = await new_job(conn, PartyType.PROVIDER, provider)
    result = await route_reply(runtime, from_raw=PROVIDER_PHONE, body=f"1 {job.code}", provider_sid="SMf")
    assert result.outcome is RouteOutcome.HANDLER_FAILED
    assert len(calls.seen) == 1
    # the handler's own writes were rolled back with its savepoint; the message and the notice stay
    assert await pool.fetchval("SELECT count(*) FROM events WHERE kind = 'test.accept'") == 0
    assert (
        await pool.fetchval("SELECT outcome FROM sms_messages WHERE provider_sid = 'SMf'") == "handler_failed"
    )
    notice = await pool.fetchrow("SELECT * FROM notices WHERE kind = 'sms.handler_failed'")
    assert notice is not None
    assert (notice["severity"], notice["subject_type"], notice["subject_id"]) == ("critical", "order", 1)


async def test_a_job_kind_without_handler_tells_an_operator(
    runtime: Runtime, pool: asyncpg.Pool, provider: int
) -> None:
    async with pool.acquire() as conn:
        job = await new_job(conn, PartyType.PROVIDER, provider, kind="nobody_handles_this")
    result = await route_reply(runtime, from_raw=PROVIDER_PHONE, body=f"1 {job.code}")
    assert result.outcome is RouteOutcome.HANDLER_FAILED
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE kind = 'sms.handler_failed'") == 1


# -- job page ---------------------------------------------------------------------------------


def test_tokens_are_short_and_bound_to_their_secret() -> None:
    expires = hours(24)
    token = make_token(
        b"s" * 32, job_id=123_456, party_type=PartyType.PROVIDER, party_id=789, expires_at=expires
    )
    assert len(token) <= 24
    read = read_token(b"s" * 32, token, now=hours(0))
    assert (read.job_id, read.party_type, read.party_id) == (123_456, PartyType.PROVIDER, 789)
    assert abs((read.expires_at - expires).total_seconds()) < 60
    with pytest.raises(ValueError, match="not valid"):
        read_token(b"t" * 32, token, now=hours(0))
    with pytest.raises(ValueError, match="expired"):
        read_token(b"s" * 32, token, now=hours(25))


def test_each_token_has_one_spelling() -> None:
    # base64 without padding leaves unused low bits in the last character: flipping them must not
    # give a second valid spelling of the same token
    for job_id in range(1, 300):
        token = make_token(
            b"s" * 32, job_id=job_id, party_type=PartyType.TEAM, party_id=3, expires_at=hours(1)
        )
        for variant in {token[:-1] + ch for ch in "AQgwBRhx"} - {token}:
            with pytest.raises(ValueError, match=r"malformed|not valid"):
                read_token(b"s" * 32, variant, now=hours(0))


@pytest.fixture
async def page(service: Service, calls: Calls) -> AsyncIterator[tuple[Service, aiohttp.ClientSession]]:
    async with aiohttp.ClientSession() as http:
        yield service, http


def service_runtime(service: Service) -> Runtime:
    assert service.runtime is not None
    return service.runtime


async def test_job_page_shows_its_job_escaped_with_buttons(
    page: tuple[Service, aiohttp.ClientSession],
) -> None:
    service, http = page
    runtime = service_runtime(service)
    async with runtime.pool.acquire() as conn:
        provider = await add_provider(conn, "康乐家政", PROVIDER_PHONE)
        job = await new_job(conn, PartyType.PROVIDER, provider)
    link = job_link(runtime, job)
    assert link.startswith(runtime.config.server.public_url + "/j/")
    async with http.get(service.url + "/j/" + job_token(runtime, job)) as resp:
        text = await resp.text()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert "助浴服务" in text
    assert job.code in text
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; 门铃坏了" in text
    assert 'value="accept"' in text
    assert 'value="decline"' in text
    assert 'value="done"' not in text  # the lane offers only these two here
    assert "https://uri.amap.com/marker?position=111.75,40.84" in text


async def test_post_on_the_page_makes_the_transition_through_the_handler(
    page: tuple[Service, aiohttp.ClientSession], calls: Calls
) -> None:
    service, http = page
    runtime = service_runtime(service)
    async with runtime.pool.acquire() as conn:
        provider = await add_provider(conn, "康乐家政", PROVIDER_PHONE)
        job = await new_job(conn, PartyType.PROVIDER, provider)
    url = service.url + "/j/" + job_token(runtime, job)
    async with http.post(url, data={"action": "decline"}) as resp:
        text = await resp.text()
        assert resp.status == 200
    assert f"已拒绝工单{job.code}" in text
    assert calls.seen == [(job.id, ReplyAction.DECLINE, f"page:provider:{provider}")]
    async with http.post(url, data={"action": "done"}) as resp:  # not offered on this page
        assert resp.status == 400
    async with http.post(url, data={"action": "<b>"}) as resp:
        assert resp.status == 400
    assert len(calls.seen) == 1
    async with runtime.pool.acquire() as conn:
        await close_jobs(conn, subject_type="order", subject_id=1, reason="declined")
    async with http.post(url, data={"action": "accept"}) as resp:
        text = await resp.text()
        assert resp.status == 200
    assert "此工单已结束" in text
    assert 'name="action"' not in text
    assert len(calls.seen) == 1


async def test_a_token_opens_its_own_job_and_nothing_else(
    page: tuple[Service, aiohttp.ClientSession], calls: Calls
) -> None:
    service, http = page
    runtime = service_runtime(service)
    async with runtime.pool.acquire() as conn:
        provider = await add_provider(conn, "康乐家政", PROVIDER_PHONE)
        other = await add_provider(conn, "安心养老", OTHER_PHONE)
        mine = await new_job(conn, PartyType.PROVIDER, provider, subject_id=1)
        theirs = await new_job(conn, PartyType.PROVIDER, other, subject_id=2)
    good = job_token(runtime, mine)
    refused = [
        # another job's id under my party, signed with a key that is not the server's
        make_token(
            b"x" * 32, job_id=theirs.id, party_type=PartyType.PROVIDER, party_id=provider, expires_at=hours(5)
        ),
        # a real signature, but for my party on their job: the job's party does not match
        make_token(
            runtime.secret,
            job_id=theirs.id,
            party_type=PartyType.PROVIDER,
            party_id=provider,
            expires_at=hours(5),
        ),
        # a real token for my job whose time is up
        make_token(
            runtime.secret,
            job_id=mine.id,
            party_type=PartyType.PROVIDER,
            party_id=provider,
            expires_at=hours(-1),
        ),
        ("B" if good[0] == "A" else "A") + good[1:],  # one character changed
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # ... or only the padding bits of the last
        "not-a-token",
        "A" * 200,
    ]
    for token in refused:
        async with http.get(service.url + "/j/" + token) as resp:
            assert resp.status == 403, token
            assert "链接无效" in await resp.text()
        async with http.post(service.url + "/j/" + token, data={"action": "accept"}) as resp:
            assert resp.status == 403, token
    assert calls.seen == []
    # the token is no key to anything else
    async with http.get(service.url + "/api/v1/sms", headers={"Authorization": f"Bearer {good}"}) as resp:
        assert resp.status == 401
    async with http.get(service.url + "/j/" + good) as resp:
        assert resp.status == 200
