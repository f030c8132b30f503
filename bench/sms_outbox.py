"""How fast the SMS outbox queues and sends, against the raw limit of the same database.

    .venv/bin/python -m bench.sms_outbox [--messages 2000]

Starts an embedded PostgreSQL in a temporary directory, migrates it, then
measures in one run:
- raw:      a bare asyncpg INSERT + COMMIT per row (the floor for anything durable)
- queue:    `queue_sms` in its own transaction per message (row, NOTIFY, commit)
- send:     the worker draining the queue with a sender that answers at once
            (claim, mark sending, record sent: the bookkeeping per message)
and prints messages per second and the ratio to raw. Twilio itself is not
measured: its own rate limits (about one message a second per long code,
more per short code or Messaging Service) are far below these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

from bench.database import bare_commit_latencies, bench_database
from dispatch.config import load_config
from dispatch.database import connect, create_pool
from dispatch.runtime import Runtime
from providers.outbox import SmsWorker, queue_sms
from providers.sms import OutboxSender


async def main(messages: int) -> None:
    async with bench_database() as dsn:
        conn = await connect(dsn)
        started = time.perf_counter()
        await bare_commit_latencies(conn, messages)
        raw = messages / (time.perf_counter() - started)
        await conn.close()

        base = load_config(environ={})
        config = dataclasses.replace(base, database=dataclasses.replace(base.database, url=dsn))
        pool = await create_pool(dsn, min_size=2, max_size=20)
        try:
            runtime = Runtime(config=config, pool=pool)
            started = time.perf_counter()
            async with pool.acquire() as c:
                for i in range(messages):
                    async with c.transaction():
                        await queue_sms(
                            c, "+8613800138000", f"工单{i}", purpose="offer", idempotency_key=f"b:{i}"
                        )
            queued = messages / (time.perf_counter() - started)
            print(f"raw INSERT+COMMIT      {raw:8.0f}/s")
            print(f"queue_sms (own tx)     {queued:8.0f}/s   {queued / raw:5.2f} x raw")
            for concurrency in (4, 16):
                await pool.execute(
                    "UPDATE sms_messages SET status = 'queued', attempts = 0, provider_sid = NULL"
                )
                sms = dataclasses.replace(config.sms, concurrency=concurrency)
                worker = SmsWorker(
                    dataclasses.replace(runtime, config=dataclasses.replace(config, sms=sms)),
                    OutboxSender(),
                )
                started = time.perf_counter()
                sent = 0
                while (result := await worker.drain_due()).claimed:
                    sent += result.sent
                rate = sent / (time.perf_counter() - started)
                await worker.stop()
                print(f"send, concurrency {concurrency:2d}   {rate:8.0f}/s   {rate / raw:5.2f} x raw")
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    asyncio.run(main(parser.parse_args().messages))
