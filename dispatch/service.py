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

from dispatch.api.app import build_app
from dispatch.components import Component, Database, Health
from dispatch.config import Config
from dispatch.runtime import Runtime
from providers.outbox import SmsWorker
from providers.sms import make_sender

log = logging.getLogger(__name__)


def api_modules() -> list[object]:
    """Every API module whose routes the service mounts (imported here, in one place)."""
    from dispatch.api import providers, residents
    from providers import job_page, sms_api, webhooks

    return [residents, providers, sms_api, webhooks, job_page]


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
            self.web = WebServer(self.config, self.runtime, components)
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
            log.info("Careline is up")
            await stop.wait()
            log.info("shutting down")
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
