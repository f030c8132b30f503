"""Escalation under load: how late deadlines fire, and what raising an alert costs.

    .venv/bin/python -m bench.escalation [--alerts 1000] [--per-alert 10] [--spread 10]

In one run, on one fresh database:
1. bare:   single-row INSERT + COMMIT latency (the raw limit of this database here)
2. raise:  `raise_alert` latency for `--alerts` residents (alert row, event row, two
           ladder deadlines, one transaction), p50/p99, and p99 as a ratio of bare's
3. fire:   `--per-alert` deadlines for each open alert (10,000 by default), due at
           random moments over the next `--spread` seconds, fired by the real
           DeadlineRunner (NOTIFY + poll) doing a realistic step each (lock the alert,
           append a timeline event); lateness = when the step's event reached the bus
           after its commit, minus when it was due. p50/p99/max.
Targets (issue #4): lateness p99 < 1 s; raise_alert p99 <= 3x the bare commit.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import random
import time

from bench.database import bare_commit_latencies, bench_database, ms, percentile
from dispatch.alert_desk import Actor, AlertDesk
from dispatch.alerts import AlertKind, AlertSource, get_alert
from dispatch.config import load_config
from dispatch.database import Conn, connect, create_pool
from dispatch.deadlines import Deadline, DeadlineHandlers, DeadlineRunner, NewDeadline, schedule_deadlines
from dispatch.events import DomainEvent, append_event
from dispatch.runtime import Runtime, utc_now


async def seed(conn: Conn, residents: int) -> list[int]:
    district = await conn.fetchval("INSERT INTO districts (code, name) VALUES ('B', '新城区') RETURNING id")
    street = await conn.fetchval(
        "INSERT INTO streets (district_id, name) VALUES ($1, '街道') RETURNING id", district
    )
    community = await conn.fetchval(
        "INSERT INTO communities (street_id, name, lat, lon) VALUES ($1, '社区', 40.85, 111.7) RETURNING id",
        street,
    )
    rows = [
        (f"15010219450101{i:04d}", f"老人{i}", "F", dt.date(1945, 1, 1), community) for i in range(residents)
    ]
    await conn.copy_records_to_table(
        "residents", records=rows, columns=["id_number", "name", "sex", "birth_date", "community_id"]
    )
    return [r["id"] for r in await conn.fetch("SELECT id FROM residents ORDER BY id")]


async def main(alerts: int, per_alert: int, spread: float) -> None:
    async with bench_database() as dsn:
        base = load_config(environ={})
        # The ladder's own rungs are pushed out of the way: this run fires only the deadlines it schedules.
        config = dataclasses.replace(
            base,
            database=dataclasses.replace(base.database, url=dsn),
            alerts=dataclasses.replace(
                base.alerts, ack_supervisor_seconds=3600, ack_all_operators_seconds=3600
            ),
        )
        conn = await connect(dsn)
        bare = await bare_commit_latencies(conn, alerts)
        residents = await seed(conn, alerts)
        await conn.close()

        pool = await create_pool(dsn, min_size=4, max_size=20)
        runtime = Runtime(config=config, pool=pool)
        desk = AlertDesk(runtime)
        raise_latency = []
        for resident in residents:
            started = time.perf_counter()
            await desk.raise_and_publish(
                source=AlertSource.ALARM, kind=AlertKind.SOS, resident_id=resident, actor=Actor("bench")
            )
            raise_latency.append(time.perf_counter() - started)

        lateness: list[float] = []
        done = asyncio.Event()
        total = alerts * per_alert

        async def step(c: Conn, deadline: Deadline, now: dt.datetime) -> list[DomainEvent]:
            alert = await get_alert(c, deadline.subject_id, for_update=True)
            event = await append_event(
                c,
                subject_type="alert",
                subject_id=alert.id,
                kind="bench.step",
                actor="bench",
                data={"due": deadline.due_at.timestamp()},
                at=now,
            )
            return [event]

        async def measure(event: DomainEvent) -> None:
            lateness.append(time.time() - float(event.data["due"]))
            if len(lateness) == total:
                done.set()

        handlers = DeadlineHandlers()
        handlers.register("bench.step", step)
        subscription = runtime.bus.subscribe("bench", measure, prefix="bench.", size=total + 1, lossless=True)
        runner = DeadlineRunner(runtime, handlers, dsn, poll_seconds=config.alerts.poll_seconds)
        await runner.start()
        rng = random.Random(12349)
        alert_ids = [r["id"] for r in await pool.fetch("SELECT id FROM alerts ORDER BY id")]
        # Due from 2 s after now, spread over `spread` seconds; one statement schedules them all.
        started_at = utc_now() + dt.timedelta(seconds=2)
        async with pool.acquire() as c, c.transaction():
            await schedule_deadlines(
                c,
                [
                    NewDeadline(
                        "bench.step",
                        "alert",
                        alert_id,
                        started_at + dt.timedelta(seconds=rng.uniform(0, spread)),
                    )
                    for alert_id in alert_ids
                    for _ in range(per_alert)
                ],
            )
        try:
            await asyncio.wait_for(done.wait(), timeout=spread + 120)
        finally:
            await runner.stop()
            await subscription.close()
            await pool.close()

        bare_p99 = percentile(bare, 99)
        raise_p99 = percentile(raise_latency, 99)
        print(
            "database:",
            "CARELINE_DATABASE_URL" if os.environ.get("CARELINE_DATABASE_URL") else "embedded, fsync on",
        )
        print(f"bare INSERT+COMMIT     p50 {ms(percentile(bare, 50))}  p99 {ms(bare_p99)}   (n={len(bare)})")
        print(
            f"raise_alert            p50 {ms(percentile(raise_latency, 50))}  p99 {ms(raise_p99)}"
            f"   p99 ratio {raise_p99 / bare_p99:4.2f}x bare (target <= 3x)"
        )
        print(
            f"deadline lateness      p50 {ms(percentile(lateness, 50))}  p99 {ms(percentile(lateness, 99))}"
            f"   max {ms(max(lateness))}   (n={len(lateness)} across {alerts} alerts, target p99 < 1 s)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--per-alert", type=int, default=10)
    parser.add_argument(
        "--spread", type=float, default=10.0, help="seconds over which the deadlines fall due"
    )
    args = parser.parse_args()
    asyncio.run(main(args.alerts, args.per_alert, args.spread))
