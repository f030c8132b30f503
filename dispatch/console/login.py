"""Log-in, log-out and the language switch."""

from __future__ import annotations

from aiohttp import web

from dispatch.api.keys import RUNTIME
from dispatch.console import i18n
from dispatch.console.pages import SESSION, SESSION_COOKIE, cookie_secure, gettext_for, render
from dispatch.console.sessions import LoginRefused, log_in, log_out
from dispatch.resident_access import client_ip

routes = web.RouteTableDef()
HOME = "/console/"


def safe_next(raw: str | None) -> str:
    """Only a console path of ours: never another host (`//evil`, `/\\evil`) after log-in."""
    if not raw or not raw.startswith("/console") or raw.startswith(("//", "/\\")) or "\\" in raw:
        return HOME
    return raw


@routes.get("/")
async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(HOME)


@routes.get("/console")
async def console_root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(HOME)


@routes.get("/console/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    if request.get(SESSION) is not None:
        raise web.HTTPFound(safe_next(request.query.get("next")))
    return render(request, "login.html", {"next": safe_next(request.query.get("next")), "error": ""})


@routes.post("/console/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    runtime = request.app[RUNTIME]
    _ = gettext_for(request)
    try:
        # No transaction around it: a refusal's row must stay written when LoginRefused is raised.
        async with runtime.pool.acquire() as conn:
            opened = await log_in(
                conn,
                runtime.config.console,
                username,
                password,
                ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""),
                now=runtime.clock(),
            )
    except LoginRefused as refused:
        if refused.throttled:
            minutes = max(1, round(runtime.config.console.login_window_seconds / 60))
            error = _("Too many failed log-ins. Try again in %(minutes)d minutes.") % {"minutes": minutes}
            status = 429
        else:
            error = _("Wrong user name or password.")
            status = 401
        return render(
            request, "login.html", {"next": target, "error": error, "username": username}, status=status
        )
    response = web.HTTPFound(target)
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        httponly=True,
        samesite="Lax",
        secure=cookie_secure(request),
        path="/",
        max_age=int(runtime.config.console.session_hours * 3600),
    )
    raise response


@routes.post("/console/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is not None:
        runtime = request.app[RUNTIME]
        async with runtime.pool.acquire() as conn:
            await log_out(conn, session.id, runtime.clock())
    response = web.HTTPFound("/console/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@routes.post("/console/language")
async def switch_language(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    chosen = str(form.get("language", ""))
    response = web.HTTPFound(safe_next(str(form.get("next", ""))))
    if chosen in i18n.LANGUAGES:
        response.set_cookie(
            i18n.LANG_COOKIE,
            chosen,
            samesite="Lax",
            secure=cookie_secure(request),
            path="/",
            max_age=365 * 86400,
        )
    raise response
