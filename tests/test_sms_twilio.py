"""Sending through the real `twilio` client to a local server that plays Twilio's REST API."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from dispatch.config import Config
from dispatch.runtime import Runtime
from providers.delivery import record_delivery_status
from providers.outbox import SmsWorker, queue_sms
from providers.sms import OutboxSender, PermanentSmsError, TransientSmsError, TwilioSender, make_sender
from tests.helpers import free_port
from tests.sms_helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TWILIO_FROM,
    BusWatcher,
    FakeTwilio,
    twilio_error,
    with_twilio,
)

TO = "+8613800138000"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    server = FakeTwilio()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def tw_config(config: Config, fake: FakeTwilio) -> Config:
    return with_twilio(config, fake.url)


def make_runtime(config: Config, pool: asyncpg.Pool, metrics: CollectorRegistry | None = None) -> Runtime:
    return Runtime(config=config, pool=pool, metrics=metrics or CollectorRegistry())


async def queue(pool: asyncpg.Pool, n: int = 1, *, to: str = TO, purpose: str = "offer") -> list[int]:
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        for i in range(n):
            ids.append(
                await queue_sms(
                    conn, to, f"工单{1000 + i}：测试", purpose=purpose, idempotency_key=f"t:{to}:{i}"
                )
            )
    return ids


async def row(pool: asyncpg.Pool, message_id: int) -> asyncpg.Record:
    found = await pool.fetchrow("SELECT * FROM sms_messages WHERE id = $1", message_id)
    assert found is not None
    return found


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_sends_with_twilio_request_shape(
    tw_config: Config, pool: asyncpg.Pool, fake: FakeTwilio
) -> None:
    runtime = make_runtime(tw_config, pool)
    worker = SmsWorker(runtime, TwilioSender(tw_config.sms))
    [message_id] = await queue(pool)
    try:
        result = await worker.drain_due(now())
    finally:
        await worker.stop()
    assert (result.claimed, result.sent) == (1, 1)
    [request] = fake.received
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.form["To"] == TO
    assert request.form["From"] == TWILIO_FROM
    assert request.form["Body"] == "【12349】工单1000：测试"
    assert "MessagingServiceSid" not in request.form
    public = tw_config.server.public_url
    assert request.form["StatusCallback"] == f"{public}/webhooks/twilio/status?m={message_id}"
    stored = await row(pool, message_id)
    assert stored["status"] == "sent"
    assert stored["provider_sid"] == "SM" + f"{1:032x}"
    assert stored["attempts"] == 1
    assert stored["sent_at"] is not None
    assert stored["from_e164"] == TWILIO_FROM
    assert runtime.metrics.get_sample_value("careline_sms_sent_total", {"purpose": "offer"}) == 1


async def test_messaging_service_instead_of_a_number(
    config: Config, pool: asyncpg.Pool, fake: FakeTwilio
) -> None:
    cfg = with_twilio(config, fake.url, twilio_from="", twilio_messaging_service_sid="MG" + "0" * 32)
    worker = SmsWorker(make_runtime(cfg, pool), make_sender(cfg))
    await queue(pool)
    try:
        await worker.drain_due(now())
    finally:
        await worker.stop()
    [request] = fake.received
    assert request.form["MessagingServiceSid"] == "MG" + "0" * 32
    assert "From" not in request.form


async def test_invalid_number_fails_at_once_with_a_notice(
    tw_config: Config, pool: asyncpg.Pool, fake: FakeTwilio
) -> None:
    fake.answer(400, twilio_error(21211, f"The 'To' number {TO} is not a valid phone number.", 400))
    runtime = make_runtime(tw_config, pool)
    worker = SmsWorker(runtime, TwilioSender(tw_config.sms))
    [message_id] = await queue(pool, purpose="dispatch")
    try:
        result = await worker.drain_due(now())
        again = await worker.drain_due(now() + dt.timedelta(hours=1))
    finally:
        await worker.stop()
    assert result.failed == 1
    assert again.claimed == 0
    assert len(fake.received) == 1
    stored = await row(pool, message_id)
    assert (stored["status"], stored["error_code"]) == ("failed", "21211")
    assert TO not in stored["last_error"]
    assert "13800138000" not in stored["last_error"]
    notice = await pool.fetchrow("SELECT * FROM notices WHERE kind = 'sms.failed'")
    assert notice is not None
    assert notice["severity"] == "critical"  # a dispatch that cannot go out
    assert notice["data"]["sms_id"] == message_id
    assert "13800138000" not in notice["text"]
    kinds = [r["kind"] for r in await pool.fetch("SELECT kind FROM events WHERE subject_type = 'sms'")]
    assert kinds == ["sms.failed"]
    assert runtime.metrics.get_sample_value("careline_sms_failed_total", {"purpose": "dispatch"}) == 1


async def test_429_and_500_are_retried_with_backoff_then_sent(
    tw_config: Config, pool: asyncpg.Pool, fake: FakeTwilio
) -> None:
    fake.answer(429, twilio_error(20429, "Too Many Requests", 429))
    fake.answer(500, {"message": "internal"})
    runtime = make_runtime(tw_config, pool)
    worker = SmsWorker(runtime, TwilioSender(tw_config.sms), rng=random.Random(7))
    base = tw_config.sms.retry_base_seconds
    [message_id] = await queue(pool)
    t0 = now()
    try:
        first = await worker.drain_due(t0)
        stored = await row(pool, message_id)
        assert first.retried == 1
        assert stored["status"] == "queued"
        assert stored["error_code"] == "20429"
        # between half and all of the base delay after the first attempt
        first_wait = stored["next_attempt_at"] - t0
        assert dt.timedelta(seconds=base / 2) <= first_wait <= dt.timedelta(seconds=base)
        # not due yet: nothing is claimed, nothing is sent
        assert (await worker.drain_due(t0 + first_wait - dt.timedelta(seconds=1))).claimed == 0
        assert len(fake.received) == 1

        t1 = t0 + first_wait
        second = await worker.drain_due(t1)
        stored = await row(pool, message_id)
        assert second.retried == 1
        assert stored["error_code"] == "500"
        second_wait = stored["next_attempt_at"] - t1
        assert dt.timedelta(seconds=base) <= second_wait <= dt.timedelta(seconds=2 * base)

        third = await worker.drain_due(t1 + second_wait)
    finally:
        await worker.stop()
    assert third.sent == 1
    stored = await row(pool, message_id)
    assert (stored["status"], stored["attempts"]) == ("sent", 3)
    assert len(fake.received) == 3
    assert runtime.metrics.get_sample_value("careline_sms_retried_total", {"purpose": "offer"}) == 2


async def test_gives_up_after_max_attempts(config: Config, pool: asyncpg.Pool, fake: FakeTwilio) -> None:
    cfg = with_twilio(config, fake.url, max_attempts=2)
    for _ in range(2):
        fake.answer(503, {"message": "unavailable"})
    worker = SmsWorker(make_runtime(cfg, pool), TwilioSender(cfg.sms))
    [message_id] = await queue(pool)
    try:
        await worker.drain_due(now())
        last = await worker.drain_due(now() + dt.timedelta(hours=1))
    finally:
        await worker.stop()
    assert last.failed == 1
    stored = await row(pool, message_id)
    assert (stored["status"], stored["attempts"], stored["error_code"]) == ("failed", 2, "503")
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE kind = 'sms.failed'") == 1


async def test_unreachable_twilio_is_transient(config: Config, pool: asyncpg.Pool) -> None:
    cfg = with_twilio(config, f"http://127.0.0.1:{free_port()}")
    sender = TwilioSender(cfg.sms)
    try:
        with pytest.raises(TransientSmsError, match="cannot reach Twilio"):
            await sender.send(TO, "x", status_callback=None)
    finally:
        await sender.close()


async def test_sender_errors_say_what_kind(tw_config: Config, fake: FakeTwilio) -> None:
    fake.answer(400, twilio_error(21610, "Attempt to send to unsubscribed recipient", 400))
    fake.answer(401, twilio_error(20003, "Authenticate", 401))
    sender = TwilioSender(tw_config.sms)
    try:
        with pytest.raises(PermanentSmsError) as unsubscribed:
            await sender.send(TO, "x", status_callback=None)
        with pytest.raises(PermanentSmsError) as unauthorised:
            await sender.send(TO, "x", status_callback=None)
    finally:
        await sender.close()
    assert unsubscribed.value.code == "21610"
    assert unauthorised.value.code == "20003"


def test_without_credentials_the_outbox_is_used(config: Config) -> None:
    assert isinstance(make_sender(config), OutboxSender)
    assert isinstance(make_sender(with_twilio(config, "http://127.0.0.1:1")), TwilioSender)


async def test_clean_restart_sends_each_message_exactly_once(
    tw_config: Config, pool: asyncpg.Pool, fake: FakeTwilio
) -> None:
    cfg = dataclasses.replace(tw_config, sms=dataclasses.replace(tw_config.sms, concurrency=2))
    runtime = make_runtime(cfg, pool)
    ids = [(await queue(pool, 1, to=f"+861380013{i:04d}"))[0] for i in range(10)]
    fake.gate = gate = asyncio.Event()

    first = SmsWorker(runtime, TwilioSender(cfg.sms))
    await first.start()
    await fake.wait_for(2)  # two sends in flight, held by the fake Twilio
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0)  # one turn of the loop: stop() has begun (nothing new is claimed) ...
    gate.set()  # ... and only then does Twilio answer the two sends in flight
    await stopping
    statuses = Counter(r["status"] for r in await pool.fetch("SELECT status FROM sms_messages"))
    assert statuses == {"sent": 2, "queued": 8}  # nothing left in `sending`

    watcher = BusWatcher(runtime.bus, prefix="sms.")
    second = SmsWorker(runtime, TwilioSender(cfg.sms))
    await second.start()
    try:
        await watcher.wait_for("sms.sent", 8)
    finally:
        await second.stop()
        await watcher.close()
    per_recipient = Counter(r.form["To"] for r in fake.received)
    assert len(per_recipient) == 10
    assert set(per_recipient.values()) == {1}
    sids = {r["provider_sid"] for r in await pool.fetch("SELECT provider_sid FROM sms_messages")}
    assert len(sids) == 10
    assert all(r["status"] == "sent" for r in [await row(pool, i) for i in ids])


async def test_crash_mid_send_is_never_resent_and_an_operator_is_told(
    tw_config: Config, pool: asyncpg.Pool, fake: FakeTwilio
) -> None:
    cfg = dataclasses.replace(
        tw_config,
        sms=dataclasses.replace(tw_config.sms, concurrency=2),
        server=dataclasses.replace(tw_config.server, shutdown_grace_seconds=0),
    )
    runtime = make_runtime(cfg, pool)
    for i in range(6):
        await queue(pool, 1, to=f"+861390013{i:04d}")
    fake.gate = held = asyncio.Event()
    crashed = SmsWorker(runtime, TwilioSender(cfg.sms))
    await crashed.start()
    await fake.wait_for(2)
    await crashed.stop()  # no grace: the two sends in flight are cut off, as if the process died
    in_flight = await pool.fetch("SELECT id FROM sms_messages WHERE status = 'sending'")
    assert len(in_flight) == 2
    fake.gate = None
    held.set()  # Twilio finishes the two requests whose sender has gone

    later = now() + dt.timedelta(seconds=cfg.sms.lease_seconds + 1)
    successor = SmsWorker(runtime, TwilioSender(cfg.sms))
    try:
        results = [await successor.drain_due(later) for _ in range(3)]
    finally:
        await successor.stop()
    assert results[0].recovered == 2
    assert sum(r.sent for r in results) == 4
    per_recipient = Counter(r.form["To"] for r in fake.received)
    assert len(fake.received) == 6
    assert set(per_recipient.values()) == {1}
    unknown = await pool.fetch(
        "SELECT id FROM sms_messages WHERE status = 'failed' AND error_code = 'unknown_outcome' ORDER BY id"
    )
    assert [r["id"] for r in unknown] == sorted(r["id"] for r in in_flight)
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE kind = 'sms.failed'") == 2

    # Twilio had taken one of them after all: its status callback (carrying ?m=<id>) corrects the record.
    corrected = await record_delivery_status(
        runtime, provider_sid="SM" + "f" * 32, twilio_status="delivered", message_id=unknown[0]["id"]
    )
    assert corrected == "delivered"
    assert (await row(pool, unknown[0]["id"]))["provider_sid"] == "SM" + "f" * 32
