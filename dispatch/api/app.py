"""The aiohttp application: middlewares, routes and the OpenAPI registry."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram

from dispatch.api import health, openapi
from dispatch.api.auth import Handler, bearer_auth
from dispatch.api.bodies import storable_text
from dispatch.api.errors import ApiError, json_error
from dispatch.api.keys import COMPONENTS, OPENAPI_PATHS, RUNTIME, SCRAPE_HOOKS
from dispatch.components import Component
from dispatch.runtime import Runtime

log = logging.getLogger(__name__)


def _metrics_middleware(runtime: Runtime) -> Any:
    requests = Counter(
        "careline_http_requests",
        "HTTP requests handled",
        ["method", "route", "status"],
        registry=runtime.metrics,
    )
    latency = Histogram(
        "careline_http_request_seconds", "HTTP request handling time", ["route"], registry=runtime.metrics
    )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "other"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            requests.labels(request.method, route, str(status)).inc()
            latency.labels(route).observe(time.perf_counter() - started)

    return middleware


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)


@web.middleware
async def refuse_unstorable_query(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A query parameter PostgreSQL could not compare (a NUL, half a surrogate pair) is a 400 naming
    it, for every route at once, before a handler puts it in a statement and gets a driver error."""
    for name, value in request.query.items():
        if not (storable_text(name) and storable_text(value)):
            field = name if storable_text(name) else "query"
            message = f"{field}: text may not hold a NUL character or a lone surrogate"
            if request.path.startswith("/api/"):
                return json_error(400, "bad_request", message, field=field)
            return web.Response(status=400, text=message + "\n")
    return await handler(request)


def build_app(
    runtime: Runtime, components: Sequence[Component], modules: Sequence[Any] = ()
) -> web.Application:
    """`modules` are API modules with `routes` and optionally `OPENAPI` (paths), `SCHEMAS` and
    `ON_SCRAPE` (run before /metrics is rendered)."""
    # The console's session middleware (its MIDDLEWARES) signs a request in before the bearer check.
    own_middlewares = [m for module in modules for m in getattr(module, "MIDDLEWARES", ())]
    app = web.Application(
        middlewares=[
            _metrics_middleware(runtime),
            errors_as_json,
            refuse_unstorable_query,
            *own_middlewares,
            bearer_auth,
        ],
        client_max_size=4 * 1024 * 1024,
    )
    app[RUNTIME] = runtime
    app[COMPONENTS] = list(components)
    for module in (health, openapi, *modules):
        app.router.add_routes(module.routes)
        if hasattr(module, "setup_app"):
            module.setup_app(app)
    paths, schemas = openapi_parts(modules)
    app[OPENAPI_PATHS] = {"paths": paths, "schemas": schemas}
    app[SCRAPE_HOOKS] = [module.ON_SCRAPE for module in modules if hasattr(module, "ON_SCRAPE")]
    return app


def openapi_parts(modules: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Paths and schemas from every module; two modules may declare different methods of one path."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for module in (health, openapi, *modules):
        for path, operations in getattr(module, "OPENAPI", {}).items():
            paths.setdefault(path, {}).update(operations)
        schemas.update(getattr(module, "SCHEMAS", {}))
    return paths, schemas
