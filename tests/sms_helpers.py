"""For the SMS tests: a local server playing Twilio's REST API, Twilio-style config, small rows."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dispatch.config import Config
from dispatch.database import Conn
from dispatch.events import DomainEvent, EventBus, append_event
from providers.jobs import Job, JobDetails, JobHandlers, JobOutcome
from providers.replies import ReplyAction

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
TWILIO_FROM = "+15005550006"


@dataclass(frozen=True)
class Received:
    """One request the fake Twilio got."""

    path: str
    form: dict[str, str]
    auth: tuple[str, str] | None
    content_type: str


@dataclass
class Planned:
    status: int
    body: dict[str, Any]


@dataclass
class FakeTwilio:
    """POST /2010-04-01/Accounts/{sid}/Messages.json, answering from a plan (201 by default).

    `gate`, when set, holds every request until the test opens it, to catch a
    sender mid-send. `wait_for(n)` waits (on a condition, not a clock) until n
    requests have arrived.
    """

    plan: deque[Planned] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    gate: asyncio.Event | None = None
    url: str = ""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._messages)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def answer(self, status: int, body: dict[str, Any] | None = None) -> None:
        self.plan.append(Planned(status, body or {}))

    async def wait_for(self, count: int, timeout: float = 10) -> None:  # noqa: ASYNC109 - a test helper
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)

    async def _messages(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        auth = None
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Basic":
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            auth = (user, password)
        self.received.append(Received(request.path, form, auth, request.content_type))
        async with self._arrived:
            self._arrived.notify_all()
        if self.gate is not None:
            await self.gate.wait()
        if self.plan:
            planned = self.plan.popleft()
            return web.Response(
                status=planned.status, text=json.dumps(planned.body), content_type="application/json"
            )
        sid = f"SM{next(self._sids):032x}"
        body = {
            "sid": sid,
            "account_sid": request.match_info["sid"],
            "to": form.get("To"),
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body"),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": "Thu, 01 May 2025 09:00:00 +0000",
            "uri": f"/2010-04-01/Accounts/{request.match_info['sid']}/Messages/{sid}.json",
        }
        return web.Response(status=201, text=json.dumps(body), content_type="application/json")


def twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def with_twilio(config: Config, api_base: str, **sms: Any) -> Config:
    """The test config with Twilio credentials, pointed at `api_base`."""
    values: dict[str, Any] = {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": TWILIO_FROM,
        "twilio_api_base": api_base,
        **sms,
    }
    return dataclasses.replace(config, sms=dataclasses.replace(config.sms, **values))


_licences = itertools.count(1)


async def add_provider(conn: Conn, name: str, sms_e164: str) -> int:
    provider_id: int = await conn.fetchval(
        "INSERT INTO providers (licence_no, name, sms_e164) VALUES ($1, $2, $3) RETURNING id",
        f"91150100MA{next(_licences):08d}",
        name,
        sms_e164,
    )
    return provider_id


async def add_team(conn: Conn, name: str, phone_e164: str, members: dict[str, str] | None = None) -> int:
    team_id: int = await conn.fetchval(
        """INSERT INTO emergency_teams (code, name, phone_e164, base_lat, base_lon)
           VALUES ($1, $2, $3, 40.84, 111.75) RETURNING id""",
        f"T{next(_licences):04d}",
        name,
        phone_e164,
    )
    for member, phone in (members or {}).items():
        await conn.execute(
            "INSERT INTO team_members (team_id, name, phone_e164) VALUES ($1, $2, $3)", team_id, member, phone
        )
    return team_id


class BusWatcher:
    """Collects the events published on a runtime's bus; `wait_for(kind, n)` waits for them."""

    def __init__(self, bus: EventBus, prefix: str = "") -> None:
        self.events: list[DomainEvent] = []
        self._changed = asyncio.Condition()
        self._subscription = bus.subscribe("test-watcher", self._listen, prefix=prefix, lossless=True)

    async def _listen(self, event: DomainEvent) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, kind: str) -> list[DomainEvent]:
        return [e for e in self.events if e.kind == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10) -> list[DomainEvent]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.of(kind)) >= count)
        return self.of(kind)

    async def close(self) -> None:
        await self._subscription.close()


KIND = "test_job"


@dataclass
class Calls:
    """What the test job handler was asked to do; `fail` makes it raise after writing an event."""

    seen: list[tuple[int, ReplyAction, str]] = field(default_factory=list)
    fail: bool = False


def register_test_handler(kind: str = KIND) -> Calls:
    """A job kind as a lane would register it: the handler writes an event and answers."""
    record = Calls()

    async def handler(conn: Conn, job: Job, action: ReplyAction, actor: str) -> JobOutcome:
        record.seen.append((job.id, action, actor))
        event = await append_event(
            conn, subject_type=job.subject_type, subject_id=job.subject_id, kind=f"test.{action}", actor=actor
        )
        if record.fail:
            raise LookupError("the lane's handler has a bug")
        if action is ReplyAction.DECLINE:
            return JobOutcome(f"已拒绝工单{job.code}", f"Declined {job.code}", ok=True, events=(event,))
        return JobOutcome(
            f"工单{job.code}：已{action.value}", f"Job {job.code}: {action.value}", True, (event,)
        )

    async def details(conn: Conn, job: Job) -> JobDetails:
        return JobDetails(
            title="助浴服务",
            lines=[("老人", "王**"), ("备注", "<script>alert(1)</script> & 门铃坏了")],
            map_link="https://uri.amap.com/marker?position=111.75,40.84",
            actions=(ReplyAction.ACCEPT, ReplyAction.DECLINE),
        )

    JobHandlers.register(kind, handler, details=details)
    return record
