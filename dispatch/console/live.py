"""`/console/live`: domain events to the browser over a WebSocket, fed by the EventBus.

Each socket is one bus subscription with a bounded queue: a browser that falls
behind loses events rather than slowing the publisher, and is then sent
`{"kind": "console.resync"}` so it reads the snapshot again. Sockets are
closed when the service stops.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from dispatch.api.errors import json_error
from dispatch.api.keys import RUNTIME
from dispatch.console.pages import SESSION
from dispatch.events import DomainEvent

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

LIVE_SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("console_live_sockets")
# What the floor shows; other events (sms.*, offer.* are shown through their order) stay on the server.
PREFIXES = ("alert.", "order.", "offer.", "call.", "call_attempt.", "notice.")
QUEUE_SIZE = 500


def event_json(event: DomainEvent) -> str:
    return json.dumps(
        {
            "kind": event.kind,
            "subject_type": event.subject_type,
            "subject_id": event.subject_id,
            "data": event.data,
            "at": event.occurred_at.isoformat(),
        },
        ensure_ascii=False,
        default=str,
    )


def _same_origin(request: web.Request) -> bool:
    """A page of another site may not open a socket with our cookie (cross-site WebSocket hijacking)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


@routes.get("/console/live")
async def live(request: web.Request) -> web.StreamResponse:
    if request.get(SESSION) is None:
        return json_error(401, "unauthorized", "not signed in")
    if not _same_origin(request):
        return json_error(403, "forbidden", "cross-origin socket refused")
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    sockets = request.app[LIVE_SOCKETS]
    sockets.add(ws)
    told_dropped = 0

    async def forward(event: DomainEvent) -> None:
        nonlocal told_dropped
        if ws.closed:
            return
        try:
            if subscription.dropped != told_dropped:
                told_dropped = subscription.dropped
                await ws.send_str(json.dumps({"kind": "console.resync"}))
            if event.kind.startswith(PREFIXES):
                await ws.send_str(event_json(event))
        except ConnectionResetError:
            # The browser went away between the check and the send; the handler's close ends this.
            return

    subscription = request.app[RUNTIME].bus.subscribe(f"console:{id(ws)}", forward, size=QUEUE_SIZE)
    try:
        await ws.send_str(json.dumps({"kind": "console.hello"}))
        # The browser sends nothing we act on; reading keeps pings answered and notices the close.
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                log.info("live socket of %s ended: %s", request.remote, ws.exception())
    finally:
        sockets.discard(ws)
        await subscription.close()
    return ws


async def close_sockets(app: web.Application) -> None:
    sockets = app[LIVE_SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"service stopping")


def setup(app: web.Application) -> None:
    app[LIVE_SOCKETS] = set()
    app.on_shutdown.append(close_sockets)
