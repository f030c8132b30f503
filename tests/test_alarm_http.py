"""Alarms over HTTP against the real service: signed device-cloud posts, the AlarmReceiver
event file, the lists for the floor, the silent-device sweep, and /healthz and /metrics."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from dispatch.config import Config
from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from telephony.alarms.contact_id import build_contact_id
from telephony.alarms.heartbeats import sweep_silent_devices
from telephony.alarms.integrations import IntegrationKeys, SignatureRefused, add_integration
from tests.alarm_helpers import SECRET_KEY, alarm_config, handled, post_signed, signed_headers, unit


@pytest.fixture
async def live(config: Config) -> AsyncIterator[Service]:
    service = Service(alarm_config(config))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def credentials(pool: asyncpg.Pool) -> tuple[str, str, str]:
    """(integration key, its secret, an operator's bearer token)."""
    async with pool.acquire() as conn:
        integration, secret = await add_integration(conn, "hx-cloud", SECRET_KEY)
        user = await create_user(conn, "wangfang", Role.OPERATOR)
        token = await issue_token(conn, user.id)
    return integration.key, secret, token


def sos(event_id: str = "evt-1", **extra: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "device_id": "hx-0001",
        "kind": "sos",
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "location": {"lat": 40.85, "lon": 111.7},
        "battery": 80,
        **extra,
    }


async def stored(pool: asyncpg.Pool) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT (SELECT count(*) FROM alarms) AS a, (SELECT count(*) FROM alerts) AS b")
    assert row is not None
    return int(row["a"]), int(row["b"])


async def test_signed_post_is_stored_once_and_acted_on(
    live: Service, pool: asyncpg.Pool, credentials: tuple[str, str, str]
) -> None:
    key, secret, token = credentials
    async with pool.acquire() as conn:
        resident, device = await unit(conn, "AB0001", cloud_id="hx-0001")
    url = live.url + "/api/v1/alarms"
    async with aiohttp.ClientSession() as http:
        event = sos()
        status, body = await post_signed(http, url, key, secret, event)
        assert status == 202, body
        assert body["duplicate"] is False
        assert body["device_id"] == device
        [alarm] = body["alarms"]
        # committed and answered; the alert is raised right after, not before the answer
        assert (alarm["kind"], alarm["outcome"], alarm["alert_id"]) == ("sos", "pending", None)
        await handled(live.runtime, live.desk)
        status, again = await post_signed(http, url, key, secret, event)
        assert status == 200
        assert again["duplicate"] is True
        [alarm] = again["alarms"]
        assert (alarm["id"], alarm["outcome"]) == (body["alarms"][0]["id"], "alert_raised")
        async with http.get(
            live.url + "/api/v1/alarms",
            params={"resident": str(resident)},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            listed = await resp.json()
        async with http.get(live.url + "/api/v1/alarms") as resp:
            assert resp.status == 401
    assert await stored(pool) == (1, 1)
    assert listed["total"] == 1
    assert listed["items"][0]["alert"] == {"id": alarm["alert_id"], "state": "raised", "kind": "sos"}
    assert listed["items"][0]["details"]["location"] == {"lat": 40.85, "lon": 111.7}
    assert await pool.fetchval("SELECT battery_percent FROM devices WHERE id = $1", device) == 80


async def test_refused_posts_store_nothing_and_name_what_is_wrong(
    live: Service, pool: asyncpg.Pool, credentials: tuple[str, str, str]
) -> None:
    key, secret, _ = credentials
    async with pool.acquire() as conn:
        await unit(conn, "AB0002", cloud_id="hx-0001")
    url = live.url + "/api/v1/alarms"
    async with aiohttp.ClientSession() as http:
        status, _first = await post_signed(http, url, key, secret, sos("evt-9"))
        assert status == 202
        await handled(live.runtime, live.desk)
        cases = [
            (await post_signed(http, url, key, "cs_wrong", sos("evt-2")), 401, "X-Careline-Signature"),
            (
                await post_signed(http, url, key, secret, sos("evt-3"), at=time.time() - 301),
                401,
                "X-Careline-Timestamp",
            ),
            (await post_signed(http, url, "ck_nobody", secret, sos("evt-4")), 401, "X-Careline-Key"),
            (
                await post_signed(http, url, key, secret, {**sos("evt-5"), "device_id": None}),
                400,
                "device_id",
            ),
            (await post_signed(http, url, key, secret, {**sos("evt-6"), "kind": "party"}), 400, "kind"),
            (await post_signed(http, url, key, secret, {**sos("evt-7"), "time": "yesterday"}), 400, "time"),
            (await post_signed(http, url, key, secret, sos("evt-9", kind="fall")), 409, "event_id"),
        ]
        async with http.post(url, data=b"{}") as resp:
            unsigned = (resp.status, await resp.json())
    for (status, body), expected, field in cases:
        assert (status, body["error"]["field"]) == (expected, field), body
    assert unsigned[0] == 401
    assert unsigned[1]["error"]["field"] == "X-Careline-Key"
    assert await stored(pool) == (1, 1)


async def test_alarmreceiver_event_file(
    live: Service, pool: asyncpg.Pool, credentials: tuple[str, str, str]
) -> None:
    key, secret, _ = credentials
    async with pool.acquire() as conn:
        await unit(conn, "AB0003", caller="+8613900139000")
    events = [build_contact_id("1234", "101", zone="015"), build_contact_id("1234", "302", zone="000")]
    text = (
        "\n\n[metadata]\n\nPROTOCOL=ADEMCO_CONTACT_ID\nCHECKSUM=yes\nCALLINGFROM=13900139000\n"
        "CALLERNAME=GW-0001\nTIMESTAMP=Mon Nov 23, 2026 @ 08:00:00 CST\n\n[events]\n\n"
        + "\n".join(events)
        + "\n"
    )
    url = live.url + "/api/v1/alarms/contact-id"
    async with aiohttp.ClientSession() as http:
        status, body = await post_signed(http, url, key, secret, text)
        again, _ = await post_signed(http, url, key, secret, text)
        bad, refused = await post_signed(
            http, url, key, secret, text.replace(events[0], events[0][:-1] + "7")
        )
    assert status == 202, body
    assert [a["outcome"] for a in body["alarms"]] == ["pending", "pending"]
    await handled(live.runtime, live.desk)
    outcomes = await pool.fetch("SELECT code, outcome FROM alarms ORDER BY id")
    assert [(r["code"], r["outcome"]) for r in outcomes] == [("101", "alert_raised"), ("302", "maintenance")]
    assert again == 200
    assert bad == 400
    assert "checksum" in refused["error"]["message"]
    assert await stored(pool) == (2, 1)


async def test_silent_devices_are_noticed_once_per_silence(
    live: Service, pool: asyncpg.Pool, credentials: tuple[str, str, str]
) -> None:
    _, _, token = credentials
    async with pool.acquire() as conn:
        _, device = await unit(conn, "AB0004")
        seen = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        await conn.execute("UPDATE devices SET last_seen_at = $2 WHERE id = $1", device, seen)
        now = seen + dt.timedelta(hours=1, minutes=59)
        assert await sweep_silent_devices(conn, now) == []
        now = seen + dt.timedelta(hours=2, seconds=1)
        assert len(await sweep_silent_devices(conn, now)) == 1
        assert await sweep_silent_devices(conn, now + dt.timedelta(hours=5)) == []
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                live.url + "/api/v1/devices/silent", headers={"Authorization": f"Bearer {token}"}
            ) as resp,
        ):
            listed = await resp.json()
        assert [d["id"] for d in listed["items"]] == [device]
        # Heard again, then silent again: a new silence, a new notice.
        await conn.execute("UPDATE devices SET last_seen_at = $2 WHERE id = $1", device, now)
        assert await sweep_silent_devices(conn, now + dt.timedelta(hours=1)) == []
        assert len(await sweep_silent_devices(conn, now + dt.timedelta(hours=2, seconds=1))) == 1
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE kind = 'device.silent'") == 2


async def test_health_and_metrics_show_the_receiver(
    live: Service, pool: asyncpg.Pool, credentials: tuple[str, str, str]
) -> None:
    key, secret, _ = credentials
    async with aiohttp.ClientSession() as http:
        await post_signed(http, live.url + "/api/v1/alarms", key, secret, sos())
        await handled(live.runtime, live.desk)
        async with http.get(live.url + "/healthz") as resp:
            health = await resp.json()
        async with http.get(live.url + "/metrics") as resp:
            metrics = await resp.text()
        headers = signed_headers(key, secret, b"x")
        async with http.post(live.url + "/api/v1/alarms", data=b"x", headers=headers) as resp:
            assert resp.status == 400
    assert health["dc09"]["status"] == "ok"
    assert live.dc09 is not None
    assert health["dc09"]["listening"] == f"127.0.0.1:{live.dc09.port}"
    assert health["heartbeats"]["status"] in ("ok", "degraded")
    assert health["alarm-handling"] == {"status": "ok", "pending": 0, "recovered_at_start": 0, "error": None}
    assert 'careline_alarms_total{kind="sos",outcome="alert_raised",source="http"} 1.0' in metrics


async def test_a_known_integration_is_checked_from_memory_and_a_revoked_one_refused_after_the_ttl(
    pool: asyncpg.Pool, credentials: tuple[str, str, str]
) -> None:
    key, secret, _ = credentials
    now = [1000.0]
    keys = IntegrationKeys(pool, SECRET_KEY, ttl=10.0, clock=lambda: now[0])
    integration, found = await keys.secret_for(key)
    assert (integration.name, found) == ("hx-cloud", secret)
    await pool.execute("UPDATE integrations SET revoked_at = now() WHERE key = $1", key)
    now[0] += 9.0
    assert (await keys.secret_for(key))[1] == secret  # still within the time it is kept
    now[0] += 2.0
    with pytest.raises(SignatureRefused, match="no such integration"):
        await keys.secret_for(key)
    with pytest.raises(SignatureRefused, match="no such integration"):
        await keys.secret_for("ck_nobody")
    wrong = IntegrationKeys(pool, "another-secret-key")
    await pool.execute("UPDATE integrations SET revoked_at = NULL WHERE key = $1", key)
    with pytest.raises(SignatureRefused, match="cannot be read"):
        await wrong.secret_for(key)
