"""How a provider has answered its job offers: acceptance rate and median response time, and its rating.

An order offer is an `sms_jobs` row of kind `order_offer` with party_type
`provider`. The service lane closes it with one of these `close_reason`s
(`OfferCloseReason`), which the figures below depend on:

| close_reason     | meaning                                                          | counted |
|------------------|------------------------------------------------------------------|---------|
| `accepted`       | the provider accepted (SMS reply or job page)                    | yes     |
| `declined`       | the provider declined                                            | yes     |
| `expired`        | the offer's deadline passed without an answer                    | yes     |
| `cancelled`      | the order was cancelled while the offer was open                 | no      |
| `taken_by_other` | another provider accepted first (urgent items, first accept wins) | no      |

Only the first three say something about the provider, so figures count
only them, over offers closed in the last 90 days (an accepted job stays
open while the service runs, and counts once it is closed):

- `acceptance_rate` = accepted / (accepted + declined + expired);
- `median_response_seconds` = the median, over those offers, of the time
  from the offer (the job's `created_at`) to the provider's first inbound SMS
  about it (`sms_messages.job_id`). An offer without one (expired unanswered,
  or answered on the job page, which leaves no message and whose job may
  close long after the answer) is left out.

Both are None when the provider had no such offer. `rating` is the stored
`providers.rating` (1–5): the service lane's follow-up calls (回访) keep it up to
date from residents' ratings; nothing here computes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from dispatch.database import Conn

ORDER_OFFER = "order_offer"
WINDOW = dt.timedelta(days=90)


class OfferCloseReason(StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    TAKEN_BY_OTHER = "taken_by_other"


COUNTED = (OfferCloseReason.ACCEPTED, OfferCloseReason.DECLINED, OfferCloseReason.EXPIRED)


@dataclass(frozen=True)
class ProviderFigures:
    offers: int  # offers counted (accepted, declined or expired) in the window
    acceptance_rate: float | None
    median_response_seconds: float | None


NO_FIGURES = ProviderFigures(0, None, None)

_COUNTED_SQL = ", ".join(f"'{r.value}'" for r in COUNTED)

# One query for a whole page of providers. Kind, party and reasons are literals, not parameters,
# so that the planner may use the partial index over providers' answered offers. `response` is
# NULL for an offer without an SMS answer, and percentile_cont leaves NULLs out.
FIGURES = f"""
WITH offers AS (
    SELECT j.party_id AS provider_id,
           j.close_reason,
           (SELECT min(m.created_at) FROM sms_messages m WHERE m.job_id = j.id AND m.direction = 'in')
               - j.created_at AS response
    FROM sms_jobs j
    WHERE j.kind = '{ORDER_OFFER}' AND j.party_type = 'provider' AND j.close_reason IN ({_COUNTED_SQL})
      AND j.party_id = ANY($1::bigint[]) AND j.closed_at > $2
)
SELECT provider_id,
       count(*) AS offers,
       count(*) FILTER (WHERE close_reason = '{OfferCloseReason.ACCEPTED.value}') AS accepted,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM response)) AS median_response
FROM offers
GROUP BY provider_id
"""


async def provider_figures(
    conn: Conn, provider_ids: Sequence[int], now: dt.datetime
) -> dict[int, ProviderFigures]:
    """Figures of each provider with offers counted in the 90 days before `now` (others: absent)."""
    if not provider_ids:
        return {}
    rows = await conn.fetch(FIGURES, list(provider_ids), now - WINDOW)
    return {
        r["provider_id"]: ProviderFigures(
            offers=r["offers"],
            acceptance_rate=r["accepted"] / r["offers"],
            median_response_seconds=float(r["median_response"]) if r["median_response"] is not None else None,
        )
        for r in rows
    }
