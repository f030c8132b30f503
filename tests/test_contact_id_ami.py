"""Contact ID reported on the AMI link: a `UserEvent(ContactId, Digits, Caller)` from the dialplan
(or a script through AMI's UserEvent action) is an alarm like any other, through a real TCP AMI
peer and a real PostgreSQL; a string that is no Contact ID event is refused and stores nothing."""

from __future__ import annotations

import asyncio

from dispatch.runtime import Runtime
from telephony.alarms.contact_id import build_contact_id
from telephony.alarms.intake import settled
from telephony.simulator import AmiPeer, Send
from tests import factories
from tests.ami_peer import ManualTime, asterisk_config, drained, serving, up

UNIT_LINE = "+8613900139000"


def user_event(digits: str, caller: str, uniqueid: str) -> bytes:
    """As Asterisk 20 writes a dialplan UserEvent (the layout of recording 03's EmergencyButton)."""
    return (
        "Event: UserEvent\r\nPrivilege: user,all\r\n"
        "Channel: Local/123492@from-resident-00000007;2\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n"
        f"CallerIDNum: {caller}\r\nCallerIDName: GW-0001\r\nConnectedLineNum: {caller}\r\n"
        "ConnectedLineName: GW-0001\r\nLanguage: en\r\nAccountCode: \r\nContext: from-resident\r\n"
        f"Exten: 123492\r\nPriority: 3\r\nUniqueid: {uniqueid}\r\nLinkedid: {uniqueid}\r\n"
        f"UserEvent: ContactId\r\nDigits: {digits}\r\nCaller: {caller}"
    ).encode()


async def test_a_contact_id_user_event_is_an_alarm_and_raises_the_alert(
    runtime: Runtime, peer: AmiPeer
) -> None:
    async with runtime.pool.acquire() as conn:
        _, community = await factories.community(conn)
        owner = await factories.resident(conn, community_id=community, name="张玉梅")
        device = await conn.fetchval(
            """INSERT INTO devices (serial, kind, resident_id, caller_e164)
               VALUES ('GW-0001', 'home_unit', $1, $2) RETURNING id""",
            owner,
            UNIT_LINE,
        )
    fall = build_contact_id("1234", "101", zone="015")
    bad = fall[:-1] + ("0" if fall[-1] != "0" else "1")  # the checksum no longer adds up
    peer.send(
        Send(
            (
                user_event(fall, "13900139000", "1795393790.20"),
                user_event(bad, "13900139000", "1795393799.21"),
            )
        )
    )
    async with serving(runtime, asterisk_config(peer.port), ManualTime()) as server:
        await up(server)
        await drained(peer, server)
        await asyncio.wait_for(server.contact_id.settled(), 10)
        assert server.contact_id.refused == 1
        await asyncio.wait_for(settled(runtime, server.contact_id.desk), 10)
    async with runtime.pool.acquire() as conn:
        alarms = await conn.fetch(
            "SELECT source, kind, code, zone, device_id, resident_id, payload FROM alarms"
        )
        assert [dict(r.items()) for r in alarms] == [
            {
                "source": "contact_id",
                "kind": "sos",
                "code": "101",
                "zone": "015",
                "device_id": device,
                "resident_id": owner,
                "payload": fall,
            }
        ]
        alert = await conn.fetchrow("SELECT resident_id, device_id, kind, source FROM alerts")
        assert alert is not None
        assert dict(alert.items()) == {
            "resident_id": owner,
            "device_id": device,
            "kind": "sos",
            "source": "alarm",
        }
