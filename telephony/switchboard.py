"""Telephony as the service runs it: one component per `[[asterisk]]` server, and the originator.

An `AsteriskServer` ties its AMI link, its call tracker and its call recorder
together: the link hands each socket read's events to the tracker and wakes the
recorder; after each login it re-syncs (open calls from the database, then
CoreShowChannels) before it calls itself up. `/healthz` shows each server's link
(down: the component is not ok; the database alone decides 200 or 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from dispatch.alert_desk import AlertDesk
from dispatch.components import Component, Health
from dispatch.config import AsteriskConfig
from dispatch.runtime import Runtime
from telephony.alarms.cid_intake import CONTACT_ID_EVENT, ContactIdEvents
from telephony.ami import ActionFailed, AmiError, AmiLink, LinkDown, LinkState, Sleep, real_sleep
from telephony.ami_events import (
    CallEvent,
    ChannelSnapshot,
    OriginateResult,
    QueueMemberListed,
    Response,
    UserEventReceived,
)
from telephony.call_store import DATABASE_ERRORS, CallRecorder, TelephonyMetrics
from telephony.calls import CallRules, CallTracker
from telephony.originate import IvrReport, OriginateAccepted, OriginateEnded, Originator

log = logging.getLogger(__name__)


def rules_of(config: AsteriskConfig) -> CallRules:
    return CallRules(
        hotline_dids=frozenset(config.hotline_dids),
        emergency_dids=frozenset(config.emergency_dids),
        inbound_contexts=frozenset(config.inbound_contexts),
    )


class AsteriskServer:
    """One Asterisk: a Component for the service, the AMI link's listener, a dialer for the originator."""

    def __init__(
        self,
        runtime: Runtime,
        config: AsteriskConfig,
        desk: AlertDesk,
        metrics: TelephonyMetrics,
        *,
        sleep: Sleep = real_sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = f"asterisk:{config.name}"
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.tracker = CallTracker(rules_of(config))
        self.recorder = CallRecorder(runtime, config.name, self.tracker, desk, metrics, sleep=sleep)
        self.contact_id = ContactIdEvents(runtime, desk, config.name, sleep=sleep)
        self.link = AmiLink(config, self, sleep=sleep, clock=clock, on_state=self._state_changed)
        self.queue_members: tuple[QueueMemberListed, ...] = ()
        self.resync_error: str | None = None
        self.resyncs = 0
        self._events = metrics.events.labels(config.name)
        self._skipped = metrics.skipped.labels(config.name)
        self._reported_skipped = 0

    @property
    def up(self) -> bool:
        return self.link.up

    async def start(self) -> None:
        await self.recorder.start()
        await self.link.start()

    async def stop(self) -> None:
        await self.link.stop()
        await self.recorder.stop()
        await self.contact_id.stop()

    async def health(self) -> Health:
        detail = self.link.describe()
        detail |= {
            "calls_active": len(self.tracker.calls),
            "resyncs": self.resyncs,
            "resync_error": self.resync_error,
            "recorder_error": self.recorder.last_error,
            "queue": {
                "name": self.config.queue,
                "members": [
                    {"name": m.name, "interface": m.interface, "paused": m.paused, "status": m.status}
                    for m in self.queue_members
                ],
            },
        }
        return Health(self.link.up and self.recorder.last_error is None, detail)

    def _state_changed(self, state: LinkState) -> None:
        self.metrics.link_up.labels(self.config.name).set(1 if state is LinkState.UP else 0)
        if state is LinkState.CONNECTING and self.link.connects > 1:
            self.metrics.reconnects.labels(self.config.name).inc()
        if state is LinkState.AUTH_FAILED:
            self.metrics.login_failures.labels(self.config.name).inc()

    # -- AmiListener ------------------------------------------------------------------------------

    async def on_login(self, link: AmiLink) -> None:
        """The re-sync: what the database has open, then what Asterisk has live, reconciled."""
        # Asterisk sends events from the login on: those of calls not yet known wait for the snapshot
        # (on_messages may have begun this already, with the login's own socket read).
        self.tracker.begin_resync()
        try:
            self.tracker.adopt(await self.recorder.load_open_calls())
        except DATABASE_ERRORS as exc:
            log.warning("Asterisk %s: open calls not read from the database (%s)", self.config.name, exc)
        try:
            async with asyncio.timeout(self.config.connect_timeout_seconds * 2):
                items = await link.request_list({"Action": "CoreShowChannels"})
        except (AmiError, TimeoutError) as exc:
            self.tracker.abort_resync()
            self.resync_error = f"CoreShowChannels: {exc or type(exc).__name__}"
            log.warning("Asterisk %s: re-sync failed (%s)", self.config.name, self.resync_error)
            if isinstance(exc, LinkDown):
                raise
        else:
            channels = [item for item in items if isinstance(item, ChannelSnapshot)]
            self.tracker.finish_resync(channels, self.clock())
            self.resyncs += 1
            self.resync_error = None
        self.recorder.wake()
        try:
            async with asyncio.timeout(self.config.connect_timeout_seconds):
                members = await link.request_list({"Action": "QueueStatus", "Queue": self.config.queue})
        except (ActionFailed, TimeoutError) as exc:
            log.warning("Asterisk %s: queue %s not read (%s)", self.config.name, self.config.queue, exc)
        else:
            self.queue_members = tuple(
                m for m in members if isinstance(m, QueueMemberListed) and m.queue == self.config.queue
            )

    def on_messages(self, messages: list[CallEvent | OriginateResult]) -> None:
        apply = self.tracker.apply
        if self.link.state is LinkState.CONNECTING and not self.tracker.syncing:
            # the events that came with (or right after) the login, before on_login could begin it
            self.tracker.begin_resync()
        for message in messages:
            if isinstance(message, OriginateResult):
                call = self.tracker.link_attempt(
                    message.action_id,
                    uniqueid=message.uniqueid,
                    channel=message.channel,
                    success=message.success,
                )
                self.recorder.note(
                    OriginateEnded(
                        message.action_id,
                        message.success,
                        message.reason,
                        message.at,
                        linked=call is not None,
                    )
                )
            elif isinstance(message, UserEventReceived) and message.name == "CareCallResult":
                self._ivr_report(message)
            elif isinstance(message, UserEventReceived) and message.name == CONTACT_ID_EVENT:
                self.contact_id.take(message)
            else:
                apply(message)
        self._events.inc(len(messages))
        if self.link.skipped != self._reported_skipped:
            self._skipped.inc(self.link.skipped - self._reported_skipped)
            self._reported_skipped = self.link.skipped
        if self.tracker.changed or self.tracker.presses:
            self.recorder.wake()

    def _ivr_report(self, event: UserEventReceived) -> None:
        action_id = event.fields.get("CallId", "").strip()
        if not action_id:
            return
        digit = event.fields.get("Digit", "").strip()[:8] or None
        status = event.fields.get("ReadStatus", "").strip()[:20] or None
        self.recorder.note(IvrReport(action_id, digit, status, event.at))

    def on_disconnect(self) -> None:
        if self.tracker.syncing:
            # the link went before the snapshot came: the next login re-syncs from scratch
            self.tracker.abort_resync()
        self.recorder.wake()

    # -- Dialer ---------------------------------------------------------------------------------

    def originate(self, fields: dict[str, Any]) -> None:
        action_id = str(fields["ActionID"])

        def answered(response: Response | None) -> None:
            if response is None:
                accepted, message = False, "the link to Asterisk dropped before it answered"
            else:
                accepted, message = response.success, response.message
            self.recorder.note(OriginateAccepted(action_id, accepted, message, self.clock()))

        try:
            self.link.send(fields, answered)
        except LinkDown as exc:
            self.recorder.note(OriginateAccepted(action_id, False, str(exc), self.clock()))


class NotConfigured:
    """Shown in /healthz when no Asterisk is configured: calls are unavailable, the rest works."""

    name = "asterisk"

    async def start(self) -> None:
        log.warning("no [[asterisk]] in the configuration: calls are unavailable")

    async def stop(self) -> None:
        return None

    async def health(self) -> Health:
        return Health(True, {"status": "not configured", "calls": "unavailable: add an [[asterisk]] table"})


class Telephony:
    """Every configured Asterisk server, and the originator that places calls through them."""

    def __init__(self, runtime: Runtime, desk: AlertDesk, *, sleep: Sleep = real_sleep) -> None:
        self.metrics = TelephonyMetrics(runtime.metrics)
        self.servers = [
            AsteriskServer(runtime, config, desk, self.metrics, sleep=sleep)
            for config in runtime.config.asterisk
        ]
        self.originator = Originator(runtime, {s.config.name: s for s in self.servers})

    def components(self) -> list[Component]:
        return list(self.servers) if self.servers else [NotConfigured()]
