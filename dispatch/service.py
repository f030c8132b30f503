"""The composition root: one process, components started in order, stopped in reverse.

`careline serve` builds a `Service` and runs it until SIGTERM or SIGINT. Each
component owns its tasks; stopping one never prevents the next from stopping.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from dispatch.alert_desk import AlertDesk
from dispatch.alert_replies import register_alert_replies
from dispatch.api.app import build_app
from dispatch.api.keys import ALERT_DESK, ORDER_DESK
from dispatch.components import Component, Database, Health
from dispatch.config import Config
from dispatch.deadlines import DeadlineHandlers, DeadlineRunner
from dispatch.escalation import register_escalation
from dispatch.order_deadlines import register_order_deadlines
from dispatch.order_desk import OrderDesk
from dispatch.order_replies import register_order_replies
from dispatch.runtime import Runtime, freeze_startup_heap
from dispatch.service_calls import wire_service_calls
from providers.outbox import SmsWorker
from providers.sms import make_sender
from telephony.alarms.dc09_server import Dc09Server
from telephony.alarms.heartbeats import HeartbeatSweep
from telephony.alarms.intake import PendingAlarms
from telephony.calls_api import ORIGINATOR
from telephony.originate import register_call_attempts
from telephony.switchboard import Telephony

log = logging.getLogger(__name__)


def api_modules() -> list[object]:
    """Every API module whose routes the service mounts (imported here, in one place)."""
    from dispatch.api import (
        alert_follow_ups,
        alerts,
        care_plans,
        figures,
        notices,
        orders,
        provider_admin,
        providers,
        reports,
        resident_timeline,
        residents,
        service_levels,
        team_admin,
        teams,
    )
    from dispatch.console import app as console
    from providers import job_page, sms_api, webhooks
    from telephony import calls_api
    from telephony.alarms import http_api

    # provider_admin after providers, team_admin after teams: each re-declares the paths they share.
    return [
        residents,
        resident_timeline,
        providers,
        provider_admin,
        teams,
        team_admin,
        alerts,
        alert_follow_ups,
        care_plans,
        orders,
        notices,
        sms_api,
        webhooks,
        job_page,
        http_api,
        calls_api,
        service_levels,
        figures,
        reports,
        console,
    ]


class WebServer:
    name = "web"

    def __init__(self, config: Config, runtime: Runtime, components: list[Component]) -> None:
        self.config = config
        self.app = build_app(runtime, components, api_modules())
        self.runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=config.server.shutdown_grace_seconds,
        )
        self.bound: list[str] = []

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.server.host, self.config.server.port)
        await site.start()
        self.bound = [f"http://{addr[0]}:{addr[1]}" for addr in self.runner.addresses]
        log.info("HTTP listening on %s", ", ".join(self.bound) or self.config.server.port)

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def health(self) -> Health:
        return Health(True, {"status": "ok", "listening": self.bound})


class Service:
    def __init__(
        self, config: Config, *, after_database: Callable[[Runtime], Awaitable[None]] | None = None
    ) -> None:
        self.config = config
        self.database = Database(config)
        self.after_database = after_database
        self.started: list[Component] = []
        self.runtime: Runtime | None = None
        self.web: WebServer | None = None
        self.desk: AlertDesk | None = None
        self.dc09: Dc09Server | None = None
        self.telephony: Telephony | None = None
        self.order_desk: OrderDesk | None = None
        self.deadline_handlers = DeadlineHandlers()

    async def start(self) -> None:
        try:
            await self._start(self.database)
            self.runtime = Runtime(config=self.config, pool=self.database.pool)
            if self.after_database is not None:
                await self.after_database(self.runtime)
            components: list[Component] = [self.database]
            sms = SmsWorker(self.runtime, make_sender(self.config))
            await self._start(sms)
            components.append(sms)
            # The emergency lane: its deadline handlers, its SMS job kind, and the runner that fires them.
            self.desk = AlertDesk(self.runtime)
            register_escalation(self.deadline_handlers, self.desk)
            register_alert_replies(self.desk)
            # The service lane: the same runner fires its offer, reminder and late-visit deadlines.
            self.order_desk = OrderDesk(self.runtime)
            register_order_deadlines(self.deadline_handlers, self.order_desk)
            register_order_replies(self.order_desk)
            # Calls Careline places: a deadline fails one Asterisk never reported on.
            register_call_attempts(self.deadline_handlers)
            # Telephony: one component per [[asterisk]] server (AMI link, call tracking, recording),
            # built here (started below) because the service lane's call tasks place calls through it.
            self.telephony = Telephony(self.runtime, self.desk)
            for listening in wire_service_calls(
                self.runtime, self.deadline_handlers, self.order_desk, self.desk, self.telephony.originator
            ):
                await self._start(listening)
                components.append(listening)
            deadlines = DeadlineRunner(
                self.runtime,
                self.deadline_handlers,
                self.database.dsn,
                poll_seconds=self.config.alerts.poll_seconds,
            )
            await self._start(deadlines)
            components.append(deadlines)
            for server in self.telephony.components():
                await self._start(server)
                components.append(server)
            # Alarm intake: the handler of stored alarms first (what a crash left pending is handled
            # before new alarms come), the DC-09 receiver (TCP + UDP, ACK after commit), the
            # silent-device sweep.
            pending = PendingAlarms(
                self.runtime, self.desk, stop_grace_seconds=self.config.server.shutdown_grace_seconds
            )
            await self._start(pending)
            components.append(pending)
            self.dc09 = Dc09Server(self.runtime, self.desk)
            await self._start(self.dc09)
            components.append(self.dc09)
            sweep = HeartbeatSweep(self.runtime)
            await self._start(sweep)
            components.append(sweep)
            self.web = WebServer(self.config, self.runtime, components)
            self.web.app[ALERT_DESK] = self.desk
            self.web.app[ORDER_DESK] = self.order_desk
            self.web.app[ORIGINATOR] = self.telephony.originator
            components.append(self.web)
            await self._start(self.web)
        except BaseException:
            await self.stop()
            raise

    @property
    def url(self) -> str:
        """Where the HTTP server listens (the real port when configured as 0)."""
        if self.web is None or not self.web.bound:
            raise RuntimeError("the web server has not started")
        return self.web.bound[0]

    async def _start(self, component: Component) -> None:
        log.info("starting %s", component.name)
        await component.start()
        self.started.append(component)

    async def stop(self) -> None:
        while self.started:
            component = self.started.pop()
            log.info("stopping %s", component.name)
            try:
                await component.stop()
            except Exception:
                log.exception("%s did not stop cleanly", component.name)

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            freeze_startup_heap()
            log.info("Careline is up")
            await stop.wait()
            log.info("shutting down")
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
