"""Provider figures (acceptance rate, median response, rating) from hand-made offer jobs and replies."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from dispatch.phones import PhoneBook
from dispatch.service import Service
from providers.provider_figures import ProviderFigures, provider_figures
from providers.provider_input import ProviderInput
from providers.registry import upsert_provider
from tests.registry_api import Desk, open_desk
from tests.registry_seed import licence_number

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
_codes = itertools.count(1001)


@pytest.fixture
async def desk(service: Service) -> AsyncIterator[Desk]:
    async with aiohttp.ClientSession() as http:
        yield await open_desk(service, http)


async def provider(desk: Desk, n: int) -> int:
    async with desk.pool.acquire() as conn:
        saved, _ = await upsert_provider(
            conn,
            ProviderInput.build(
                PhoneBook(),
                licence_no=licence_number(n),
                name=f"服务商{n}",
                sms=f"1394710200{n}",
                items="HK01",
            ),
        )
    return saved.id


async def job(
    pool: asyncpg.Pool,
    provider_id: int,
    *,
    created: dt.datetime,
    closed_after: float | None,
    reason: str | None,
    replies_after: tuple[float, ...] = (),
    kind: str = "order_offer",
    party: str = "provider",
) -> int:
    """An offer job made at `created`, closed `closed_after` seconds later (None: still open),
    with inbound replies that many seconds after it was made."""
    job_id: int = await pool.fetchval(
        """INSERT INTO sms_jobs (code, kind, subject_type, subject_id, party_type, party_id, open,
                                 created_at, expires_at, closed_at, close_reason)
           VALUES ($1, $2, 'order', 1, $3, $4, $5, $6::timestamptz,
                   $6::timestamptz + interval '10 minutes', $7, $8)
           RETURNING id""",
        str(next(_codes)),
        kind,
        party,
        provider_id,
        closed_after is None,
        created,
        created + dt.timedelta(seconds=closed_after) if closed_after is not None else None,
        reason,
    )
    for seconds in replies_after:
        await pool.execute(
            """INSERT INTO sms_messages (direction, to_e164, from_e164, body, segments, status, purpose,
                                         job_id, created_at)
               VALUES ('in', '+8612349', '+8613947102001', '1', 1, 'received', 'reply', $1, $2)""",
            job_id,
            created + dt.timedelta(seconds=seconds),
        )
    return job_id


async def test_figures_count_accepted_declined_and_expired_offers(desk: Desk) -> None:
    busy, quiet, slow = [await provider(desk, n) for n in (1, 2, 3)]
    pool = desk.pool
    hours = [NOW - dt.timedelta(hours=h) for h in range(1, 20)]
    # accepted by SMS after 60 s; the offer SMS itself (outbound, same job) is no answer
    accepted = await job(
        pool, busy, created=hours[0], closed_after=3600, reason="accepted", replies_after=(60,)
    )
    await pool.execute(
        """INSERT INTO sms_messages (direction, to_e164, body, segments, status, purpose, idempotency_key,
                                     job_id, created_at)
           VALUES ('out', '+8613947102001', '派单', 1, 'sent', 'offer', 'offer-1', $1, $2)""",
        accepted,
        hours[0] + dt.timedelta(seconds=1),
    )
    await job(pool, busy, created=hours[1], closed_after=121, reason="declined", replies_after=(120,))
    # answered twice: the first reply counts
    await job(pool, busy, created=hours[2], closed_after=900, reason="accepted", replies_after=(40, 300))
    await job(pool, busy, created=hours[3], closed_after=600, reason="expired")  # no answer: rate, not median
    # answered on the job page: no message, so it counts for the rate and not for the median
    await job(pool, busy, created=hours[4], closed_after=7200, reason="accepted")
    # none of these say anything about the provider's answers
    await job(pool, busy, created=hours[5], closed_after=30, reason="cancelled", replies_after=(10,))
    await job(pool, busy, created=hours[6], closed_after=30, reason="taken_by_other", replies_after=(5,))
    await job(pool, busy, created=hours[7], closed_after=None, reason=None, replies_after=(1,))
    await job(pool, busy, created=hours[8], closed_after=20, reason="accepted", kind="order_reminder")
    await job(pool, busy, created=hours[9], closed_after=20, reason="accepted", party="team")
    old = NOW - dt.timedelta(days=91)
    await job(pool, busy, created=old, closed_after=30, reason="declined", replies_after=(2,))

    await job(pool, slow, created=hours[0], closed_after=600, reason="expired")
    await job(pool, slow, created=hours[1], closed_after=600, reason="expired", replies_after=(900,))

    async with pool.acquire() as conn:
        figures = await provider_figures(conn, [busy, quiet, slow], NOW)
    # busy: 5 counted offers, 3 accepted; replies after 60, 120 and 40 s
    assert figures[busy] == ProviderFigures(offers=5, acceptance_rate=0.6, median_response_seconds=60.0)
    assert quiet not in figures
    # a late reply to an expired offer is still its answer time
    assert figures[slow] == ProviderFigures(offers=2, acceptance_rate=0.0, median_response_seconds=900.0)

    # four answered: the median is halfway between the middle two
    await job(pool, busy, created=hours[10], closed_after=20, reason="declined", replies_after=(10,))
    async with pool.acquire() as conn:
        figures = await provider_figures(conn, [busy], NOW)
    assert figures[busy] == ProviderFigures(offers=6, acceptance_rate=0.5, median_response_seconds=50.0)

    # seen from later, the oldest offers leave the 90-day window
    async with pool.acquire() as conn:
        later = await provider_figures(conn, [busy], hours[0] + dt.timedelta(days=90))
    assert later[busy] == ProviderFigures(offers=1, acceptance_rate=1.0, median_response_seconds=60.0)


async def test_figures_in_the_list_and_the_card(desk: Desk) -> None:
    rated, plain = await provider(desk, 1), await provider(desk, 2)
    await desk.pool.execute("UPDATE providers SET rating = 4.5 WHERE id = $1", rated)
    await job(
        desk.pool,
        rated,
        created=NOW - dt.timedelta(hours=2),
        closed_after=50,
        reason="accepted",
        replies_after=(45,),
    )
    await job(
        desk.pool,
        rated,
        created=NOW - dt.timedelta(hours=1),
        closed_after=30,
        reason="declined",
        replies_after=(25,),
    )

    status, listing = await desk.call("GET", "/api/v1/providers", token=desk.operator)
    assert status == 200
    shown = {
        p["id"]: (p["rating"], p["acceptance_rate"], p["median_response_seconds"], p["offers_90d"])
        for p in listing["items"]
    }
    assert shown == {rated: (4.5, 0.5, 35.0, 2), plain: (None, None, None, 0)}
    _, card = await desk.call("GET", f"/api/v1/providers/{rated}", token=desk.operator)
    assert (card["rating"], card["acceptance_rate"], card["median_response_seconds"]) == (4.5, 0.5, 35.0)
    _, card = await desk.call("GET", f"/api/v1/providers/{plain}", token=desk.operator)
    assert (card["acceptance_rate"], card["median_response_seconds"], card["offers_90d"]) == (None, None, 0)
