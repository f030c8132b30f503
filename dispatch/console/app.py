"""The console as the web application mounts it: its routes, middlewares and start-up hook.

`dispatch.service.api_modules()` lists this module; `build_app` adds `routes`,
puts `MIDDLEWARES` before the API's bearer authentication, and calls `setup_app`.
A new console page module is added to `PAGE_MODULES` (see the package docstring).
"""

from __future__ import annotations

from aiohttp import web

from dispatch.console import (
    access_log,
    device_pages,
    floor,
    live,
    login,
    registry_pages,
    report_pages,
    resident_pages,
    sms_pages,
)
from dispatch.console.csrf import csrf_middleware
from dispatch.console.i18n import HERE
from dispatch.console.pages import session_middleware

PAGE_MODULES = [
    login,
    floor,
    live,
    access_log,
    resident_pages,
    registry_pages,
    sms_pages,
    device_pages,
    report_pages,
]

# The session first (it says who is asking), then the CSRF check (it needs the session's token).
MIDDLEWARES = [session_middleware, csrf_middleware]

routes: list[web.AbstractRouteDef] = [
    *(route for module in PAGE_MODULES for route in module.routes),
    # Every script and style sheet is served from here: the floor may be on a closed network.
    web.static("/console/static", HERE / "static"),
]


def setup_app(app: web.Application) -> None:
    live.setup(app)
