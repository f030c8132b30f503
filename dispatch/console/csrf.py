"""CSRF protection: every state-changing request a browser makes must carry a token it was given.

- Signed in: the session's own token (stored with the session), sent as the
  `X-CSRF-Token` header by the scripts or the `csrf_token` field by forms.
- Not signed in (the log-in form): double submit, the `careline_csrf` cookie
  and the `csrf_token` field must match; the cookie is set with the form.

Requests authenticated by a bearer token, and the signed device, Twilio and job
page posts, carry no session cookie that a browser would add on its own, so
they are not checked here. A refusal is 403, as a page on `/console` and as
JSON on `/api`.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from dispatch.api.auth import Handler
from dispatch.api.errors import json_error
from dispatch.console.pages import SESSION, cookie_secure, gettext_for, render
from dispatch.console.sessions import Session

CSRF_COOKIE = "careline_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
# The anonymous token made for this request (set as a cookie on the way out).
_FRESH: web.RequestKey[str] = web.RequestKey("csrf_fresh", str)


def csrf_token_for(request: web.Request) -> str:
    """The token a page puts into its forms and scripts."""
    session: Session | None = request.get(SESSION)
    if session is not None:
        return session.csrf_token
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) >= 32:
        return existing
    fresh = request.get(_FRESH)
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request[_FRESH] = fresh
    return fresh


async def _supplied(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in _FORMS:
        # aiohttp keeps the parsed form, so the handler reads it again for free.
        form = await request.post()
        value = form.get(CSRF_FIELD)
        return str(value) if isinstance(value, str) else ""
    return ""


def _refuse(request: web.Request) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        return json_error(403, "csrf", "this request needs the session's CSRF token (X-CSRF-Token)")
    _ = gettext_for(request)
    return render(
        request,
        "error.html",
        {
            "title": _("Request refused"),
            "message": _(
                "The form had expired or did not come from this console. Go back, reload and try again."
            ),
        },
        status=403,
    )


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in _SAFE:
        session = request.get(SESSION)
        if session is not None:
            expected = session.csrf_token
        elif request.path.startswith("/console"):
            expected = request.cookies.get(CSRF_COOKIE, "")
        else:
            return await handler(request)
        supplied = await _supplied(request)
        if not expected or not supplied or not hmac.compare_digest(supplied.encode(), expected.encode()):
            return _refuse(request)
    response = await handler(request)
    fresh = request.get(_FRESH)
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE, fresh, httponly=True, samesite="Lax", path="/console", secure=cookie_secure(request)
        )
    return response
