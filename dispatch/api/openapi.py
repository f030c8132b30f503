"""The OpenAPI 3.1 document, assembled from what each API module declares beside its routes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api.errors import ok
from dispatch.api.keys import OPENAPI_PATHS

routes = web.RouteTableDef()

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Careline 12349 API",
            "version": "1",
            "description": "Residents, providers, calls, alarms, alerts and orders of the 12349 hotline.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, **schemas},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@routes.get("/api/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    spec = request.app[OPENAPI_PATHS]
    return ok(document(spec["paths"], spec["schemas"]))
