"""`/healthz` for load balancers and people, `/metrics` for Prometheus."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dispatch.api.errors import ok
from dispatch.api.keys import COMPONENTS, RUNTIME, SCRAPE_HOOKS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The database decides up or down; other components say what they are doing."""
    components = request.app[COMPONENTS]
    body: dict[str, Any] = {}
    database_ok = False
    degraded = False
    for component in components:
        health = await component.health()
        body[component.name] = health.detail
        if component.name == "database":
            database_ok = health.ok
        elif not health.ok:
            degraded = True
    status = "down" if not database_ok else "degraded" if degraded else "ok"
    return ok({"status": status, **body}, status=200 if database_ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[RUNTIME].metrics
    for hook in request.app.get(SCRAPE_HOOKS, []):
        await hook(request.app)
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


OPENAPI: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Service health: database and each component",
            "security": [],
            "responses": {
                "200": {
                    "description": "database reachable (status ok or degraded)",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "503": {
                    "description": "database unreachable",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "security": [],
            "responses": {
                "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
            },
        }
    },
}
