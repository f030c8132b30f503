"""Twilio's webhooks, signed with Twilio's own validator, against the running service; the SMS API."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from dispatch.config import Config
from dispatch.database import Conn
from dispatch.runtime import Runtime
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from providers.jobs import Job, JobHandlers, PartyType, open_job
from providers.outbox import queue_sms
from providers.replies import ReplyAction
from tests.sms_helpers import (
    AUTH_TOKEN,
    KIND,
    BusWatcher,
    Calls,
    FakeTwilio,
    add_provider,
    register_test_handler,
    with_twilio,
)

PROVIDER_PHONE = "+8613900000001"
OUR_NUMBER = "+15005550006"
SMS_PATH = "/webhooks/twilio/sms"
STATUS_PATH = "/webhooks/twilio/status"


@pytest.fixture
def calls() -> Iterator[Calls]:
    record = register_test_handler(KIND)
    yield record
    JobHandlers.unregister(KIND)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    server = FakeTwilio()
    await server.start()
    yield server
    await server.stop()


async def running(config: Config) -> Service:
    service = Service(config)
    await service.start()
    return service


@pytest.fixture
async def twilio_service(config: Config, fake: FakeTwilio) -> AsyncIterator[Service]:
    service = await running(with_twilio(config, fake.url))
    yield service
    await service.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def rt(service: Service) -> Runtime:
    assert service.runtime is not None
    return service.runtime


def inbound_form(body: str, sid: str = "SM" + "1" * 32, sender: str = PROVIDER_PHONE) -> dict[str, str]:
    """The fields Twilio posts for an incoming SMS (the ones that matter, and some that do not)."""
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": OUR_NUMBER,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC" + "a1" * 16,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


async def post_signed(
    http: aiohttp.ClientSession,
    service: Service,
    path: str,
    form: dict[str, str],
    *,
    signed_url: str | None = None,
    token: str = AUTH_TOKEN,
    signature: str | None = None,
) -> tuple[int, str, str]:
    """POST `form` to the service, signed the way Twilio signs: over the URL it called and the form."""
    url = signed_url or rt(service).config.server.public_url + path
    headers = {}
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, form)
    if signature:
        headers["X-Twilio-Signature"] = signature
    async with http.post(service.url + path, data=form, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def new_job(conn: Conn, provider: int) -> Job:
    return await open_job(
        conn,
        kind=KIND,
        subject_type="order",
        subject_id=42,
        party_type=PartyType.PROVIDER,
        party_id=provider,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )


async def stored(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT direction, count(*) FROM sms_messages GROUP BY direction")
    return {r["direction"]: r["count"] for r in rows}


async def test_signed_reply_is_committed_acted_on_once_and_answered(
    twilio_service: Service, http: aiohttp.ClientSession, fake: FakeTwilio, calls: Calls
) -> None:
    runtime = rt(twilio_service)
    async with runtime.pool.acquire() as conn:
        provider = await add_provider(conn, "康乐家政", PROVIDER_PHONE)
        job = await new_job(conn, provider)
    form = inbound_form(f"１，{job.code}")
    status, content_type, text = await post_signed(http, twilio_service, SMS_PATH, form)
    assert status == 200
    assert content_type == "text/xml; charset=utf-8"
    assert text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    # committed before the 200: visible at once from another connection
    row = await runtime.pool.fetchrow(
        "SELECT * FROM sms_messages WHERE provider_sid = $1", form["MessageSid"]
    )
    assert row is not None
    assert (row["from_e164"], row["to_e164"], row["outcome"]) == (PROVIDER_PHONE, OUR_NUMBER, "acted")
    assert calls.seen == [(job.id, ReplyAction.ACCEPT, f"provider:{provider}")]

    # Twilio retries the same message (it did not see our 200): stored once, acted on once
    status, _, _ = await post_signed(http, twilio_service, SMS_PATH, form)
    assert status == 200
    assert len(calls.seen) == 1
    assert await stored(runtime.pool) == {"in": 1, "out": 1}

    # the answer goes out through Twilio, once
    await fake.wait_for(1)
    [sent] = fake.received
    assert sent.form["To"] == PROVIDER_PHONE
    assert sent.form["Body"] == f"【12349】工单{job.code}：已accept"


@pytest.mark.parametrize(
    "forgery",
    ["missing", "wrong_token", "tampered_body", "garbage"],
)
async def test_unsigned_or_forged_requests_are_refused_and_store_nothing(
    twilio_service: Service, http: aiohttp.ClientSession, calls: Calls, forgery: str
) -> None:
    runtime = rt(twilio_service)
    async with runtime.pool.acquire() as conn:
        provider = await add_provider(conn, "康乐家政", PROVIDER_PHONE)
        job = await new_job(conn, provider)
    form = inbound_form(f"1 {job.code}")
    url = runtime.config.server.public_url + SMS_PATH
    if forgery == "missing":
        result = await post_signed(http, twilio_service, SMS_PATH, form, signature="")
    elif forgery == "wrong_token":
        result = await post_signed(http, twilio_service, SMS_PATH, form, token="not-our-token")
    elif forgery == "tampered_body":
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, inbound_form(f"2 {job.code}"))
        result = await post_signed(http, twilio_service, SMS_PATH, form, signature=signature)
    else:
        result = await post_signed(http, twilio_service, SMS_PATH, form, signature="bm90IGEgc2lnbmF0dXJl")
    assert result[0] == 403
    status_result = await post_signed(
        http,
        twilio_service,
        STATUS_PATH,
        {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered"},
        token="not-our-token",
    )
    assert status_result[0] == 403
    assert calls.seen == []
    assert await stored(runtime.pool) == {}
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 0


async def test_status_callbacks_move_the_outbound_message_forward_only(
    twilio_service: Service, http: aiohttp.ClientSession, fake: FakeTwilio
) -> None:
    runtime = rt(twilio_service)
    watcher = BusWatcher(runtime.bus, prefix="sms.")
    async with runtime.pool.acquire() as conn, conn.transaction():
        first = await queue_sms(conn, PROVIDER_PHONE, "工单1234", purpose="offer", idempotency_key="a")
        second = await queue_sms(conn, "+8613900000002", "工单5678", purpose="dispatch", idempotency_key="b")
    try:
        await watcher.wait_for("sms.sent", 2)
    finally:
        await watcher.close()
    sids = {
        r["id"]: r["provider_sid"]
        for r in await runtime.pool.fetch("SELECT id, provider_sid FROM sms_messages")
    }
    callback = {r.form["To"]: r.form["StatusCallback"] for r in fake.received}
    public = runtime.config.server.public_url
    assert callback[PROVIDER_PHONE] == f"{public}{STATUS_PATH}?m={first}"

    async def report(message_id: int, status: str, **extra: str) -> int:
        path = f"{STATUS_PATH}?m={message_id}"
        form = {"MessageSid": sids[message_id], "MessageStatus": status, "AccountSid": "AC1", **extra}
        return (await post_signed(http, twilio_service, path, form))[0]

    assert await report(first, "sent") == 200
    assert await report(first, "delivered") == 200
    assert await report(first, "sent") == 200  # late and out of order: ignored
    row = await runtime.pool.fetchrow("SELECT status, error_code FROM sms_messages WHERE id = $1", first)
    assert row is not None
    assert (row["status"], row["error_code"]) == ("delivered", None)

    assert await report(second, "undelivered", ErrorCode="30003") == 200
    row = await runtime.pool.fetchrow("SELECT status, error_code FROM sms_messages WHERE id = $1", second)
    assert row is not None
    assert (row["status"], row["error_code"]) == ("undelivered", "30003")
    notice = await runtime.pool.fetchrow("SELECT * FROM notices WHERE kind = 'sms.failed'")
    assert notice is not None
    assert (notice["severity"], notice["data"]["sms_id"]) == ("critical", second)
    # an unknown SID changes nothing and is still answered 200 (Twilio would only retry)
    form = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    assert (await post_signed(http, twilio_service, STATUS_PATH, form))[0] == 200


async def test_behind_a_proxy_the_public_url_is_what_is_signed(
    config: Config, fake: FakeTwilio, http: aiohttp.ClientSession, calls: Calls
) -> None:
    proxied = with_twilio(config, fake.url)
    proxied = dataclasses.replace(
        proxied,
        server=dataclasses.replace(proxied.server, public_url="https://localhost:8443/hotline"),
    )
    service = await running(proxied)
    try:
        runtime = rt(service)
        async with runtime.pool.acquire() as conn:
            await add_provider(conn, "康乐家政", PROVIDER_PHONE)
        form = inbound_form("好的")
        local = service.url + SMS_PATH
        assert (await post_signed(http, service, SMS_PATH, form, signed_url=local))[0] == 403
        public = "https://localhost:8443/hotline" + SMS_PATH
        assert (await post_signed(http, service, SMS_PATH, form, signed_url=public))[0] == 200
        assert await stored(runtime.pool) == {"in": 1, "out": 1}
    finally:
        await service.stop()


async def test_without_twilio_the_webhooks_refuse(
    service: Service, http: aiohttp.ClientSession, calls: Calls
) -> None:
    form = inbound_form("1")
    # even "signed" with some token: without our auth token nothing can be checked
    assert (await post_signed(http, service, SMS_PATH, form, token="anything"))[0] == 403
    assert (await post_signed(http, service, STATUS_PATH, form, token="anything"))[0] == 403
    assert await stored(rt(service).pool) == {}


# -- /api/v1/sms ------------------------------------------------------------------------------


async def bearer(service: Service) -> dict[str, str]:
    async with rt(service).pool.acquire() as conn:
        user = await create_user(conn, "op1", Role.OPERATOR)
        token = await issue_token(conn, user.id)
    return {"Authorization": f"Bearer {token}"}


async def test_outbox_reply_takes_the_same_path_and_the_list_shows_it(
    service: Service, http: aiohttp.ClientSession, calls: Calls
) -> None:
    runtime = rt(service)
    headers = await bearer(service)
    async with runtime.pool.acquire() as conn:
        provider = await add_provider(conn, "康乐家政", PROVIDER_PHONE)
        job = await new_job(conn, provider)
    watcher = BusWatcher(runtime.bus, prefix="sms.sent")
    try:
        reply = {"from": "139 0000 0001", "body": f"接{job.code}"}
        async with http.post(service.url + "/api/v1/sms/outbox/reply", json=reply, headers=headers) as resp:
            assert resp.status == 201
            result = await resp.json()
        await watcher.wait_for("sms.sent")  # the answer, "sent" by the outbox
    finally:
        await watcher.close()
    assert result["outcome"] == "acted"
    assert result["job_id"] == job.id
    assert result["action"] == "accept"
    assert calls.seen == [(job.id, ReplyAction.ACCEPT, f"provider:{provider}")]

    async with http.get(service.url + "/api/v1/sms", headers=headers) as resp:
        assert resp.status == 200
        page = await resp.json()
    assert page["backend"] == "outbox"
    assert [m["direction"] for m in page["items"]] == ["out", "in"]
    answer = page["items"][0]
    assert answer["status"] == "sent"
    assert answer["provider_sid"].startswith("OUTBOX")
    assert answer["to"] == PROVIDER_PHONE
    assert answer["id"] == result["reply_ids"][0]

    for query, ids in [
        ("direction=in", [result["message_id"]]),
        ("status=sent", [answer["id"]]),
        ("phone=13900000001&limit=1", [answer["id"]]),
        (f"limit=1&before={answer['id']}", [result["message_id"]]),
        ("phone=13900000002", []),
        ("since=2999-01-01T00:00:00%2B08:00", []),
    ]:
        async with http.get(service.url + "/api/v1/sms?" + query, headers=headers) as resp:
            assert resp.status == 200, query
            assert [m["id"] for m in (await resp.json())["items"]] == ids, query

    for query in (
        "direction=sideways",
        "since=yesterday",
        "since=2025-01-01T00:00:00",
        "limit=0",
        "phone=12",
    ):
        async with http.get(service.url + "/api/v1/sms?" + query, headers=headers) as resp:
            assert resp.status == 400, query
            assert (await resp.json())["error"]["code"] == "invalid"
    async with http.get(service.url + "/api/v1/sms") as resp:
        assert resp.status == 401


async def test_outbox_reply_is_refused_when_twilio_is_configured(
    twilio_service: Service, http: aiohttp.ClientSession
) -> None:
    headers = await bearer(twilio_service)
    reply = {"from": PROVIDER_PHONE, "body": "1"}
    async with http.post(
        twilio_service.url + "/api/v1/sms/outbox/reply", json=reply, headers=headers
    ) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == "not_outbox"


@pytest.mark.parametrize(
    "payload",
    [{"from": PROVIDER_PHONE}, {"from": "abc", "body": "1"}, {"from": PROVIDER_PHONE, "body": ""}, [1], "x"],
)
async def test_outbox_reply_rejects_bad_input(
    service: Service, http: aiohttp.ClientSession, payload: object
) -> None:
    headers = await bearer(service)
    async with http.post(service.url + "/api/v1/sms/outbox/reply", json=payload, headers=headers) as resp:
        assert resp.status == 400
    assert await stored(rt(service).pool) == {}


async def test_sms_routes_are_in_the_openapi_document(service: Service, http: aiohttp.ClientSession) -> None:
    async with http.get(service.url + "/api/openapi.json") as resp:
        spec = await resp.json()
    assert {"/api/v1/sms", "/api/v1/sms/outbox/reply", SMS_PATH, STATUS_PATH} <= set(spec["paths"])
    assert {"SmsMessage", "SmsPage", "OutboxReply", "OutboxReplyResult"} <= set(spec["components"]["schemas"])


async def test_healthz_reports_the_sms_backend(service: Service, http: aiohttp.ClientSession) -> None:
    async with http.get(service.url + "/healthz") as resp:
        body = await resp.json()
    assert body["sms"]["backend"] == "outbox"
    assert body["sms"]["running"] is True


async def test_a_reply_with_a_nul_is_stored_with_a_replacement_character(
    twilio_service: Service, http: aiohttp.ClientSession, calls: Calls
) -> None:
    runtime = rt(twilio_service)
    async with runtime.pool.acquire() as conn:
        await add_provider(conn, "康乐家政", PROVIDER_PHONE)
    form = inbound_form("ok\x00!!")
    status, _, _ = await post_signed(http, twilio_service, SMS_PATH, form)
    assert status == 200
    row = await runtime.pool.fetchrow(
        "SELECT body FROM sms_messages WHERE provider_sid = $1", form["MessageSid"]
    )
    assert row is not None
    assert row["body"] == "ok\ufffd!!"
    assert calls.seen == []
