"""Shared by the alarm tests: a registered unit, frames it would send, signed HTTP posts."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
from typing import Any

import aiohttp

from dispatch.alert_desk import AlertDesk
from dispatch.config import Config
from dispatch.database import Conn
from dispatch.runtime import Runtime
from telephony.alarms import dc09
from telephony.alarms.intake import settled
from telephony.alarms.integrations import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign
from tests import factories

SECRET_KEY = "test-secret-key-for-integrations"


def alarm_config(config: Config, **alarms: Any) -> Config:
    """The test config with the DC-09 receiver on a free port and integrations usable."""
    return dataclasses.replace(
        config,
        alarms=dataclasses.replace(config.alarms, dc09_port=0, **alarms),
        security=dataclasses.replace(config.security, secret_key=SECRET_KEY),
    )


async def handled(runtime: Runtime | None, desk: AlertDesk | None) -> None:
    """Once a sender has its ACK or 202 the alarm is stored and handed to the handler: wait for it
    to have raised or joined the alert (the ACK comes before; that is the point)."""
    assert runtime is not None
    assert desk is not None
    await asyncio.wait_for(settled(runtime, desk), 10)


async def unit(
    conn: Conn, account: str, *, cloud_id: str | None = None, caller: str | None = None
) -> tuple[int, int]:
    """(resident id, device id) of a resident with a home unit on this DC-09 account."""
    _, community = await factories.community(conn)
    resident = await factories.resident(conn, community_id=community)
    device = await conn.fetchval(
        """INSERT INTO devices (serial, kind, resident_id, dc09_account, cloud_id, caller_e164,
                                heartbeat_interval_s)
           VALUES ($1, 'home_unit', $2, $3, $4, $5, 3600) RETURNING id""",
        f"GW-{account}",
        resident,
        account,
        cloud_id,
        caller,
    )
    return resident, int(device)


def sia(
    account: str,
    seq: int,
    code: str = "PA",
    zone: str = "001",
    *,
    at: dt.datetime | None = None,
    key: bytes | None = None,
) -> bytes:
    return dc09.encode_message(
        "SIA-DCS",
        seq,
        account,
        f"#{account}|N{code}{zone}",
        receiver="1",
        line="1",
        timestamp=at,
        key=key,
    )


def signed_headers(key: str, secret: str, body: bytes, *, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    return {HEADER_KEY: key, HEADER_TIMESTAMP: timestamp, HEADER_SIGNATURE: sign(secret, timestamp, body)}


async def post_signed(
    http: aiohttp.ClientSession, url: str, key: str, secret: str, body: dict[str, Any] | str, **kw: Any
) -> tuple[int, dict[str, Any]]:
    raw = (json.dumps(body) if isinstance(body, dict) else body).encode()
    async with http.post(url, data=raw, headers=signed_headers(key, secret, raw, **kw)) as resp:
        return resp.status, await resp.json()
