"""Typed keys for what the aiohttp application and requests carry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dispatch.users import User

if TYPE_CHECKING:
    from dispatch.alert_desk import AlertDesk
    from dispatch.components import Component
    from dispatch.order_desk import OrderDesk
    from dispatch.runtime import Runtime

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
COMPONENTS: web.AppKey[list[Component]] = web.AppKey("components")
ALERT_DESK: web.AppKey[AlertDesk] = web.AppKey("alert_desk")
ORDER_DESK: web.AppKey[OrderDesk] = web.AppKey("order_desk")
USER: web.RequestKey[User] = web.RequestKey("user", User)
OPENAPI_PATHS: web.AppKey[dict[str, Any]] = web.AppKey("openapi_paths")
# Run before /metrics is rendered, to bring gauges worked out from rows up to date (`ON_SCRAPE`
# of an API module).
ScrapeHook = Callable[[web.Application], Awaitable[None]]
SCRAPE_HOOKS: web.AppKey[list[ScrapeHook]] = web.AppKey("scrape_hooks")
