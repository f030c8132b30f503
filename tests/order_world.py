"""For the service-lane tests: a lane whose clock the test moves (deadlines fired at a chosen time,
SMS replies through the real router)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg

from dispatch.config import Config
from dispatch.deadlines import DeadlineHandlers, FireReport, fire_due_deadlines
from dispatch.events import timeline
from dispatch.order_deadlines import register_order_deadlines
from dispatch.order_desk import OrderDesk
from dispatch.order_replies import register_order_replies
from dispatch.orders import Order, OrderSource, get_order
from dispatch.runtime import Runtime
from providers.inbound import RouteResult, route_reply
from tests.helpers import FakeClock
from tests.order_rows import T0


@dataclasses.dataclass
class Lane:
    runtime: Runtime
    clock: FakeClock
    desk: OrderDesk
    handlers: DeadlineHandlers

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runtime.pool

    async def order(
        self,
        resident: int,
        item: str = "bath",
        *,
        start_in: dt.timedelta = dt.timedelta(hours=3),
        hours: float = 2,
        notes: str = "",
    ) -> Order:
        start = self.clock.now + start_in
        offered = await self.desk.create_order(
            resident_id=resident,
            item_code=item,
            window_start=start,
            window_end=start + dt.timedelta(hours=hours),
            notes=notes,
            source=OrderSource.OPERATOR,
            actor="user:op",
        )
        return offered.order

    async def fire(self, **after: float) -> FireReport:
        """Move the clock on and fire what is due, as the DeadlineRunner would."""
        self.clock.advance(**after)
        report = await fire_due_deadlines(self.pool, self.handlers, self.clock.now)
        await self.runtime.bus.publish(*report.events)
        return report

    async def reply(self, phone: str, text: str) -> RouteResult:
        return await route_reply(self.runtime, from_raw=phone, body=text, received_at=self.clock.now)

    async def code(self, order_id: int, provider_id: int) -> str:
        code = await self.pool.fetchval(
            """SELECT code FROM sms_jobs WHERE subject_type = 'order' AND subject_id = $1 AND party_id = $2
               ORDER BY id DESC LIMIT 1""",
            order_id,
            provider_id,
        )
        assert code is not None
        return str(code)

    async def state(self, order_id: int) -> str:
        async with self.pool.acquire() as conn:
            return (await get_order(conn, order_id)).state.value

    async def get(self, order_id: int) -> Order:
        async with self.pool.acquire() as conn:
            return await get_order(conn, order_id)

    async def sms_to(self, phone: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT body, purpose FROM sms_messages WHERE direction = 'out' AND to_e164 = $1 ORDER BY id",
            phone,
        )

    async def offers(self, order_id: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT f.provider_id, f.outcome, f.chosen, f.withdrawn_at, j.open, j.close_reason
               FROM order_offers f JOIN sms_jobs j ON j.id = f.job_id WHERE f.order_id = $1 ORDER BY f.id""",
            order_id,
        )

    async def kinds(self, order_id: int) -> list[str]:
        async with self.pool.acquire() as conn:
            return [e.kind for e in await timeline(conn, "order", order_id)]

    async def notices(self, order_id: int) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT kind FROM notices WHERE subject_type = 'order' AND subject_id = $1 ORDER BY id", order_id
        )
        return [r["kind"] for r in rows]


def lane_config(config: Config, **orders: Any) -> Config:
    return dataclasses.replace(config, orders=dataclasses.replace(config.orders, **orders))


def make_lane(config: Config, pool: asyncpg.Pool, start: dt.datetime = T0) -> Lane:
    clock = FakeClock(start)
    runtime = Runtime(config=config, pool=pool, clock=clock)
    desk = OrderDesk(runtime)
    handlers = DeadlineHandlers()
    register_order_deadlines(handlers, desk)
    register_order_replies(desk)
    return Lane(runtime, clock, desk, handlers)
