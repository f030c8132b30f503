"""JSON errors: every API failure is `{"error": {"code", "message", ...}}` with its HTTP status."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


class ApiError(Exception):
    """Raised by a handler; the middleware turns it into a JSON error response."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> web.Response:
        return json_error(self.status, self.code, self.message, **self.extra)


def bad_request(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid", f"{field}: {message}", field=field)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)
