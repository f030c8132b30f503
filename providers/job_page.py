"""The one-job mobile page behind the link in an SMS: `/j/<token>`.

GET shows what the party needs (the lane that owns the job kind provides it
through `JobHandlers.register(kind, handler, details=...)`) and a button per
action; POST (form field `action`) makes the same transition as the SMS
reply, through the same handler. The token opens its own job for its own
party and nothing else; a forged, expired or foreign token gets a 403 page.
Everything is inline (no external assets: the page must load on a poor
connection) and every value is escaped.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import urlsplit

from aiohttp import web

from dispatch.api.keys import RUNTIME
from dispatch.events import DomainEvent
from dispatch.notices import Severity, raise_notice
from dispatch.runtime import Runtime
from providers import templates
from providers.job_links import TokenError, job_link, read_token
from providers.jobs import Job, JobDetails, JobHandlers, JobOutcome, NoJobHandler, act_on_job, get_job
from providers.replies import ReplyAction

__all__ = ["job_link", "routes"]

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

LABELS: dict[ReplyAction, tuple[str, str]] = {
    ReplyAction.ACCEPT: ("接单 / 收到", "Accept"),
    ReplyAction.DECLINE: ("拒绝", "Decline"),
    ReplyAction.ARRIVED: ("已到达", "Arrived"),
    ReplyAction.DONE: ("已完成", "Done"),
}

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
    # the token is in the URL: it must not leak to another site or a cache
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_CSS = """
body{margin:0;font:17px/1.5 -apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
background:#f4f5f7;color:#1d2129}
main{max-width:34rem;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.25rem 0 .75rem}
.code{display:inline-block;background:#1d2129;color:#fff;border-radius:.4rem;padding:.1rem .6rem;
font-weight:700;letter-spacing:.1em}
dl{background:#fff;border-radius:.6rem;padding:.5rem 1rem;margin:0 0 1rem}
dt{color:#86909c;font-size:.85rem;margin-top:.5rem}dd{margin:0 0 .25rem;font-size:1.05rem}
.note{border-radius:.6rem;padding:.75rem 1rem;margin:0 0 1rem;background:#e8f3ff}
.note.bad{background:#ffece8}.note.done{background:#e8ffea}
form{margin:0 0 .75rem}
button,.map{display:block;width:100%;box-sizing:border-box;font-size:1.2rem;padding:.9rem;border:0;
border-radius:.6rem;text-align:center;text-decoration:none}
button{background:#165dff;color:#fff}button.decline{background:#fff;color:#cb2634;border:2px solid #cb2634}
.map{background:#fff;color:#165dff;border:2px solid #165dff;margin-bottom:1rem}
footer{color:#86909c;font-size:.85rem;margin-top:1.5rem}
"""


def _english(runtime: Runtime) -> bool:
    return templates.is_english(runtime.config.locale.language)


def _page(title: str, body: str, *, status: int = 200, english: bool = False) -> web.Response:
    lang = "en" if english else "zh-CN"
    document = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}<footer>12349 {'elderly care hotline' if english else '便民为老服务热线'}"
        "</footer></main></body></html>"
    )
    return web.Response(
        text=document, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def _refused(english: bool) -> web.Response:
    if english:
        return _page(
            "Link not valid",
            "<h1>This link is not valid</h1>"
            "<p>It may have expired. Please reply to the SMS or call 12349.</p>",
            status=403,
            english=True,
        )
    return _page(
        "链接无效",
        "<h1>链接无效或已过期</h1><p>请直接回复短信，或拨打 12349。</p>",
        status=403,
    )


def _safe_link(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


async def _job_for(request: web.Request) -> tuple[Runtime, Job | None]:
    """The job the token in the URL opens, or None (forged, expired, another party's, gone)."""
    runtime = request.app[RUNTIME]
    try:
        token = read_token(runtime.secret, request.match_info["token"], now=runtime.clock())
    except TokenError:
        return runtime, None
    async with runtime.pool.acquire() as conn:
        job = await get_job(conn, token.job_id)
    if job is None or (job.party_type, job.party_id) != (token.party_type, token.party_id):
        return runtime, None
    return runtime, job


def _render(runtime: Runtime, job: Job, details: JobDetails, note: str = "", note_class: str = "") -> str:
    english = _english(runtime)
    now = runtime.clock()
    parts = [f'<h1>{html.escape(details.title)} <span class="code">{html.escape(job.code)}</span></h1>']
    if note:
        parts.append(f'<p class="note {note_class}">{html.escape(note)}</p>')
    if not job.open or job.expires_at <= now:
        closed = "This job is closed." if english else "此工单已结束，无需操作。"
        parts.append(f'<p class="note">{closed}</p>')
    lines = "".join(
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>" for label, value in details.lines
    )
    if lines:
        parts.append(f"<dl>{lines}</dl>")
    map_link = _safe_link(details.map_link)
    if map_link:
        label = "Open map" if english else "打开地图导航"
        parts.append(f'<a class="map" href="{html.escape(map_link)}" rel="noreferrer">{label}</a>')
    if job.open and job.expires_at > now:
        for action in details.actions:
            zh, en = LABELS[action]
            css = ' class="decline"' if action is ReplyAction.DECLINE else ""
            parts.append(
                '<form method="post"><input type="hidden" name="action" '
                f'value="{action.value}"><button{css}>{html.escape(en if english else zh)}</button></form>'
            )
    return "".join(parts)


async def _details(runtime: Runtime, job: Job) -> JobDetails:
    provide = JobHandlers.details(job.kind)
    if provide is not None:
        async with runtime.pool.acquire() as conn:
            return await provide(conn, job)
    english = _english(runtime)
    deadline = job.expires_at.astimezone(runtime.tz).strftime("%Y-%m-%d %H:%M")
    return JobDetails(
        title="Job" if english else "工单",
        lines=[("Respond by" if english else "请在此前回复", deadline)],
    )


@routes.get("/j/{token}")
async def job_page(request: web.Request) -> web.Response:
    runtime, job = await _job_for(request)
    if job is None:
        return _refused(_english(runtime))
    details = await _details(runtime, job)
    return _page(details.title, _render(runtime, job, details), english=_english(runtime))


@routes.post("/j/{token}")
async def job_page_action(request: web.Request) -> web.Response:
    runtime, job = await _job_for(request)
    english = _english(runtime)
    if job is None:
        return _refused(english)
    form = await request.post()
    raw_action = form.get("action")
    details = await _details(runtime, job)
    try:
        action = ReplyAction(raw_action) if isinstance(raw_action, str) else None
    except ValueError:
        action = None
    if action is None or action not in details.actions:
        note = "Choose one of the buttons." if english else "请点击下方按钮操作。"
        return _page(details.title, _render(runtime, job, details, note, "bad"), status=400, english=english)
    outcome, events = await _act(runtime, job, action)
    await runtime.bus.publish(*events)
    if outcome is None:
        note = "Could not record this; please call 12349." if english else "未能处理，请拨打 12349。"
        return _page(details.title, _render(runtime, job, details, note, "bad"), status=500, english=english)
    async with runtime.pool.acquire() as conn:
        fresh = await get_job(conn, job.id) or job
    refreshed = await _details(runtime, fresh)
    note = outcome.text(runtime.config.locale.language).removeprefix(templates.SIGNATURE)
    css = "done" if outcome.ok else "bad"
    return _page(refreshed.title, _render(runtime, fresh, refreshed, note, css), english=english)


async def _act(
    runtime: Runtime, job: Job, action: ReplyAction
) -> tuple[JobOutcome | None, list[DomainEvent]]:
    """The handler in a transaction with the job locked; None (and a notice) when it fails."""
    actor = f"page:{job.party_type.value}:{job.party_id}"
    now = runtime.clock()
    async with runtime.pool.acquire() as conn, conn.transaction():
        locked = await get_job(conn, job.id, for_update=True)
        if locked is None or not locked.open or locked.expires_at <= now:
            closed = JobOutcome("此工单已结束，无需操作。", "This job is closed.", ok=False)
            return closed, []
        try:
            async with conn.transaction():
                outcome = await act_on_job(conn, locked, action, actor)
        except NoJobHandler:
            why = "no handler"
        except Exception as exc:
            # as for SMS replies: a failing lane handler must reach an operator, not a stack trace
            log.exception("job page: the %s handler failed on job %d", locked.kind, locked.id)
            why = type(exc).__name__
        else:
            return outcome, list(outcome.events)
        notice = await raise_notice(
            conn,
            kind="job_page.handler_failed",
            severity=Severity.CRITICAL,
            text=f"工单{locked.code}的网页操作（{action.value}）未能自动处理：{why}。请人工处理",
            subject_type=locked.subject_type,
            subject_id=locked.subject_id,
            context_id=locked.context_id,
            data={"job_id": locked.id, "action": action.value},
            at=now,
        )
    return None, [notice]
