"""Delivery reports: Twilio's status callbacks applied to our outbound messages.

Callbacks arrive late, twice and out of order; a status only moves forward
(queued → sending → sent → delivered | undelivered | failed). The callback
URL carries our message id (`?m=<id>`), so a report finds its message even
when the sender never learned the SID (a send cut off by a crash): what
Twilio says happened then replaces our `unknown_outcome`.
"""

from __future__ import annotations

import datetime as dt
import logging

from dispatch.events import DomainEvent
from dispatch.runtime import Runtime
from providers.outbox import OutboundRow, failure_records, sms_metrics

log = logging.getLogger(__name__)


# Twilio's MessageStatus → ours. Anything Twilio has taken counts as sent.
TWILIO_STATUS: dict[str, str] = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}

RECORD_STATUS = """
UPDATE sms_messages
SET provider_sid = COALESCE(provider_sid, $2),
    status = $3,
    error_code = CASE WHEN $3 IN ('failed', 'undelivered') THEN COALESCE($4, error_code) ELSE error_code END,
    last_error = CASE WHEN $3 IN ('failed', 'undelivered') THEN $5 ELSE last_error END,
    sent_at = CASE WHEN $3 IN ('sent', 'delivered') THEN COALESCE(sent_at, $6) ELSE sent_at END,
    lease_until = NULL,
    updated_at = $6
WHERE direction = 'out'
  AND (provider_sid = $2 OR ($1::bigint IS NOT NULL AND id = $1 AND provider_sid IS NULL))
  -- statuses only move forward (callbacks arrive out of order), except that a message we
  -- gave up on as `unknown_outcome` is corrected by what Twilio says happened to it
  AND (CASE status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2 ELSE 3 END
         < CASE $3 WHEN 'sent' THEN 2 ELSE 3 END
       OR (status = 'failed' AND error_code = 'unknown_outcome' AND $3 <> 'failed'))
RETURNING id, to_e164, body, attempts, purpose, subject_type, subject_id, context_id
"""


async def record_delivery_status(
    runtime: Runtime,
    *,
    provider_sid: str,
    twilio_status: str,
    error_code: str | None = None,
    message_id: int | None = None,
    at: dt.datetime | None = None,
) -> str | None:
    """Apply one status callback; our new status, or None when it changed nothing (unknown SID,
    an older status arriving late, a status we do not track)."""
    status = TWILIO_STATUS.get(twilio_status.strip().lower())
    if status is None:
        return None
    now = at or runtime.clock()
    events: list[DomainEvent] = []
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            RECORD_STATUS,
            message_id,
            provider_sid,
            status,
            error_code or None,
            f"Twilio reports {status}" + (f" (error {error_code})" if error_code else ""),
            now,
        )
        if row is None:
            return None
        message = OutboundRow(**dict(row.items()))
        if status in ("failed", "undelivered"):
            events = await failure_records(
                conn, message, error_code or status, f"Twilio: {status}", now, status=status
            )
    if status in ("failed", "undelivered"):
        sms_metrics(runtime.metrics).failed.labels(message.purpose).inc()
        log.warning("SMS #%d %s (error %s)", message.id, status, error_code or "-")
    else:
        events.append(
            DomainEvent(
                kind=f"sms.{status}",
                subject_type="sms",
                subject_id=message.id,
                data={"purpose": message.purpose, "about": [message.subject_type, message.subject_id]},
                context_id=message.context_id,
                occurred_at=now,
            )
        )
    await runtime.bus.publish(*events)
    return status
