"""What every console page uses: the session middleware, `page(role)` and `render(...)`.

The session middleware reads the `careline_session` cookie on `/console…` and
`/api/…` requests that carry no `Authorization` header, and puts the session's
user where the API's `current_user` finds it: the console's scripts call the
same `/api/v1/…` endpoints as integrations, with the session instead of a token.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from dispatch.api.auth import Handler
from dispatch.api.keys import RUNTIME, USER
from dispatch.console import i18n
from dispatch.console.sessions import Session, session_for_token
from dispatch.users import Role, User

SESSION_COOKIE = "careline_session"
SESSION: web.RequestKey[Session] = web.RequestKey("console_session", Session)
# The paths a session authenticates: the console itself and the API its scripts call.
SESSION_PATHS = ("/console", "/api/")

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.cookies.get(SESSION_COOKIE)
    if token and request.path.startswith(SESSION_PATHS) and "Authorization" not in request.headers:
        runtime = request.app[RUNTIME]
        async with runtime.pool.acquire() as conn:
            session = await session_for_token(conn, token, runtime.clock())
        if session is not None:
            request[SESSION] = session
            request[USER] = session.user
    return await handler(request)


def cookie_secure(request: web.Request) -> bool:
    """Secure cookies over TLS (or an https public URL), as `console.secure_cookies` says."""
    config = request.app[RUNTIME].config
    mode = config.console.secure_cookies
    if mode != "auto":
        return mode == "always"
    return request.secure or config.server.public_url.startswith("https://")


def language(request: web.Request) -> str:
    return i18n.pick_language(
        request.cookies.get(i18n.LANG_COOKIE), request.app[RUNTIME].config.locale.language
    )


def gettext_for(request: web.Request) -> Callable[[str], str]:
    return i18n.translations(language(request)).gettext


def render(
    request: web.Request, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    """A template of `templates/` in the request's language, with what the base template needs."""
    # Imported here: csrf imports this module for SESSION.
    from dispatch.console.csrf import csrf_token_for

    lang = language(request)
    runtime = request.app[RUNTIME]
    session = request.get(SESSION)
    values: dict[str, Any] = {
        "user": session.user if session else None,
        "lang": lang,
        "csrf_token": csrf_token_for(request),
        "tz": runtime.config.locale.timezone,
        "path": request.path,
        "path_qs": request.path_qs,
        "Role": Role,
        "script_texts": i18n.script_texts(lang),
    }
    values.update(context or {})
    html = i18n.environment(lang).get_template(template).render(values)
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    # A page may show residents' records: no shared cache keeps one, the browser's own only for Back.
    response.headers["Cache-Control"] = "no-store"
    return response


def forbidden(request: web.Request, role: Role) -> web.Response:
    _ = gettext_for(request)
    return render(
        request,
        "error.html",
        {
            "title": _("Not allowed"),
            "message": _("This page needs the %(role)s role.") % {"role": _(role.value)},
        },
        status=403,
    )


def page(role: Role = Role.OPERATOR) -> Callable[[PageHandler], PageHandler]:
    """A console page for `role` and above: the log-in page when signed out, a 403 page below it."""

    def wrap(handler: PageHandler) -> PageHandler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            user: User | None = request.get(USER)
            if request.get(SESSION) is None or user is None:
                raise web.HTTPFound("/console/login?next=" + quote(request.path_qs, safe=""))
            if not user.may(role):
                return forbidden(request, role)
            return await handler(request)

        return guarded

    return wrap
