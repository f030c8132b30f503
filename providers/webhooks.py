"""Twilio's webhooks: inbound SMS (`/webhooks/twilio/sms`) and delivery reports (`/webhooks/twilio/status`).

Both check `X-Twilio-Signature` with Twilio's own `RequestValidator` over the
URL Twilio called, rebuilt from `server.public_url` + the path and query as
received — behind a reverse proxy the Host and scheme we see are not the ones
Twilio signed. A missing or wrong signature gets 403 and nothing is stored.
Without a configured auth token (the development outbox) there is nothing to
check against, so both refuse with 403 as well: replies are typed in through
POST /api/v1/sms/outbox/reply instead.

An inbound SMS is committed (and acted on) before the 200; a Twilio retry of
the same MessageSid stores nothing new and acts on nothing again. The answer
is an empty TwiML `<Response/>`: our answers to the sender go through the
outbox like every other SMS, so they are tracked and retried.
"""

from __future__ import annotations

import logging

from aiohttp import web
from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, RequestValidator, get_signature_algorithm

from dispatch.api.bodies import storable
from dispatch.api.keys import RUNTIME
from dispatch.runtime import Runtime
from providers.delivery import record_delivery_status
from providers.inbound import route_reply

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _twiml(status: int = 200) -> web.Response:
    return web.Response(text=EMPTY_TWIML, status=status, content_type="text/xml", charset="utf-8")


def signed_url(runtime: Runtime, request: web.Request) -> str:
    """The URL Twilio requested, as it saw it: the public URL, then our path and query as received."""
    return runtime.config.server.public_url + request.raw_path


async def verified_params(request: web.Request) -> dict[str, list[str]] | None:
    """The form parameters when the request is signed by Twilio with our auth token, else None."""
    runtime = request.app[RUNTIME]
    token = runtime.config.sms.twilio_auth_token
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        return None
    form = await request.post()
    params: dict[str, list[str]] = {}
    for key, value in form.items():
        if isinstance(value, str):
            params.setdefault(key, []).append(value)
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not RequestValidator(token).validate(
        signed_url(runtime, request), _Form(params), signature, algorithm
    ):
        return None
    # Checked as Twilio signed them; kept as the database can store them (a reply is never lost
    # to a NUL: it is stored and read as text nobody understands).
    return {key: [storable(v) for v in values] for key, values in params.items()}


class _Form(dict[str, list[str]]):
    """What the validator reads repeated form fields from (it asks for `getall`)."""

    def getall(self, key: str) -> list[str]:
        return self[key]


def _one(params: dict[str, list[str]], key: str) -> str:
    values = params.get(key)
    return values[0] if values else ""


def _refuse(request: web.Request) -> web.Response:
    configured = bool(request.app[RUNTIME].config.sms.twilio_auth_token)
    log.warning(
        "refused %s: %s",
        request.path,
        "bad or missing Twilio signature" if configured else "no Twilio auth token",
    )
    return web.Response(status=403, text="forbidden: not signed by Twilio\n")


@routes.post("/webhooks/twilio/sms")
async def inbound_sms(request: web.Request) -> web.Response:
    params = await verified_params(request)
    if params is None:
        return _refuse(request)
    runtime = request.app[RUNTIME]
    sid = _one(params, "MessageSid") or _one(params, "SmsMessageSid")
    if not sid:
        return web.Response(status=400, text="MessageSid is missing\n")
    result = await route_reply(
        runtime,
        from_raw=_one(params, "From"),
        body=_one(params, "Body"),
        to_raw=_one(params, "To"),
        provider_sid=sid,
    )
    log.info("inbound SMS #%d: %s", result.message_id, result.outcome.value)
    return _twiml()


@routes.post("/webhooks/twilio/status")
async def delivery_status(request: web.Request) -> web.Response:
    params = await verified_params(request)
    if params is None:
        return _refuse(request)
    runtime = request.app[RUNTIME]
    sid = _one(params, "MessageSid") or _one(params, "SmsSid")
    status = _one(params, "MessageStatus") or _one(params, "SmsStatus")
    if not sid or not status:
        return web.Response(status=400, text="MessageSid and MessageStatus are required\n")
    raw_id = request.query.get("m", "")
    message_id = int(raw_id) if raw_id.isdigit() and len(raw_id) < 19 else None
    await record_delivery_status(
        runtime,
        provider_sid=sid,
        twilio_status=status,
        error_code=_one(params, "ErrorCode") or None,
        message_id=message_id,
    )
    return _twiml()


_FORM = {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}
_TWIML = {"text/xml": {"schema": {"type": "string"}}}

OPENAPI: dict[str, object] = {
    "/webhooks/twilio/sms": {
        "post": {
            "summary": "Twilio inbound SMS webhook (X-Twilio-Signature)",
            "security": [],
            "requestBody": {"required": True, "content": _FORM},
            "responses": {
                "200": {"description": "stored and acted on (empty TwiML)", "content": _TWIML},
                "400": {"description": "MessageSid missing"},
                "403": {"description": "not signed by Twilio with our auth token"},
            },
        }
    },
    "/webhooks/twilio/status": {
        "post": {
            "summary": "Twilio message status callback (X-Twilio-Signature); ?m= is our message id",
            "security": [],
            "parameters": [
                {"name": "m", "in": "query", "required": False, "schema": {"type": "integer"}},
            ],
            "requestBody": {"required": True, "content": _FORM},
            "responses": {
                "200": {"description": "recorded (empty TwiML)", "content": _TWIML},
                "400": {"description": "MessageSid or MessageStatus missing"},
                "403": {"description": "not signed by Twilio with our auth token"},
            },
        }
    },
}
