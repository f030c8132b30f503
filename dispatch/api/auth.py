"""Bearer-token authentication for `/api/v1/…` and role checks for handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from dispatch.api.errors import ApiError, json_error
from dispatch.api.keys import RUNTIME, USER
from dispatch.users import Role, User, user_for_token

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths under /api/v1 that authenticate in their own way (signed device posts).
OPEN_PREFIXES: tuple[str, ...] = ("/api/v1/alarms/contact-id",)
# Exact method + path pairs that do, where the same path is bearer-authenticated for other
# methods (GET /api/v1/alarms lists alarms for the floor; POST is a signed device cloud).
OPEN_ROUTES: frozenset[tuple[str, str]] = frozenset({("POST", "/api/v1/alarms")})


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (
        USER in request  # signed in by a console session (dispatch/console/pages.py)
        or not request.path.startswith("/api/v1/")
        or request.path.startswith(OPEN_PREFIXES)
        or (request.method, request.path) in OPEN_ROUTES
    ):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return json_error(401, "unauthorized", "an 'Authorization: Bearer <token>' header is required")
    async with request.app[RUNTIME].pool.acquire() as conn:
        user = await user_for_token(conn, token.strip())
    if user is None:
        return json_error(401, "unauthorized", "the bearer token is not valid")
    request[USER] = user
    return await handler(request)


def current_user(request: web.Request, at_least: Role = Role.OPERATOR) -> User:
    user: User | None = request.get(USER)
    if user is None:
        raise ApiError(401, "unauthorized", "not signed in")
    if not user.may(at_least):
        raise ApiError(403, "forbidden", f"this needs the {at_least.value} role")
    return user
