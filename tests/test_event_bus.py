"""The in-process bus: a slow or failing subscriber never slows or breaks the publisher."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dispatch.events import DomainEvent, EventBus


def event(n: int, kind: str = "alert.raised") -> DomainEvent:
    return DomainEvent(kind=kind, subject_type="alert", subject_id=n)


async def test_every_subscriber_gets_events_of_its_prefix() -> None:
    bus = EventBus()
    alerts: list[int] = []
    everything: list[str] = []
    got_all = asyncio.Event()

    async def on_alert(e: DomainEvent) -> None:
        alerts.append(e.subject_id)

    async def on_any(e: DomainEvent) -> None:
        everything.append(e.kind)
        if len(everything) == 3:
            got_all.set()

    bus.subscribe("alerts", on_alert, prefix="alert.")
    bus.subscribe("all", on_any)
    await bus.publish(event(1), DomainEvent(kind="sms.received", subject_type="sms", subject_id=9), event(2))
    await asyncio.wait_for(got_all.wait(), timeout=5)
    await bus.close()
    assert alerts == [1, 2]
    assert everything == ["alert.raised", "sms.received", "alert.raised"]


async def test_a_stuck_display_subscriber_drops_instead_of_blocking(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    release = asyncio.Event()

    async def stuck(e: DomainEvent) -> None:
        await release.wait()

    display = bus.subscribe("console", stuck, size=10)
    # The publisher is never held up: 1,000 events go through while the console is stuck.
    await asyncio.wait_for(bus.publish(*(event(n) for n in range(1000))), timeout=5)
    assert display.dropped >= 1000 - 11
    assert "console is behind" in caplog.text
    release.set()
    await bus.close()


async def test_a_lossless_subscriber_gets_everything_in_order() -> None:
    bus = EventBus()
    seen: list[int] = []
    done = asyncio.Event()

    async def persist(e: DomainEvent) -> None:
        await asyncio.sleep(0)
        seen.append(e.subject_id)
        if len(seen) == 500:
            done.set()

    bus.subscribe("store", persist, size=5, lossless=True)
    await bus.publish(*(event(n) for n in range(500)))
    await asyncio.wait_for(done.wait(), timeout=5)
    await bus.close()
    assert seen == list(range(500))


async def test_a_failing_listener_is_logged_and_the_bus_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    good: list[int] = []
    two = asyncio.Event()

    async def broken(e: DomainEvent) -> None:
        raise ValueError("listener bug")

    async def fine(e: DomainEvent) -> None:
        good.append(e.subject_id)
        if len(good) == 2:
            two.set()

    caplog.set_level(logging.ERROR)
    broken_sub = bus.subscribe("broken", broken)
    bus.subscribe("fine", fine)
    await bus.publish(event(1), event(2))
    await asyncio.wait_for(two.wait(), timeout=5)
    await asyncio.sleep(0)  # let the broken listener run its second event too
    assert not broken_sub.task.done(), "a listener's exception must not end its subscription"
    assert "listener broken failed" in caplog.text
    await bus.close()
    assert good == [1, 2]


async def test_closing_a_subscription_stops_delivery() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def listen(e: DomainEvent) -> None:
        seen.append(e.subject_id)

    subscription = bus.subscribe("x", listen)
    await subscription.close()
    await bus.publish(event(1))
    await asyncio.sleep(0)
    assert seen == []
    assert subscription.task.cancelled()
