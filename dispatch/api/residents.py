"""residents API (placeholder routes table, filled in by the registry work)."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
