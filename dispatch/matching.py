"""Which providers may take an order, and in which order they are asked.

A candidate is an active provider that offers the item, serves the resident's
community or district, has room in the order's window (its accepted and
in-service orders overlapping the window are fewer than its capacity), and
has not declined, let expire or been taken off an offer for this order. One
SQL query finds them and their figures through the indexes on
provider_items(item_code), provider_areas(community_id / district_id) and the
service lane's own (migrations/0004_orders.sql).

They are ranked by one score, the weighted mean of five parts, each from 0
(worst) to 1 (best); the weights are `[orders] weight_*` in config.toml:

    score = (w_d·D + w_r·R + w_a·A + w_l·L + w_f·F) / (w_d + w_r + w_a + w_l + w_f)

    D  distance   1 / (1 + km / distance_half_km), great-circle from the provider's
                  base to the resident (their own location, else their community's);
                  0 when either is unknown
    R  rating     (rating − 1) / 4; 0.5 while the provider has no rating
    A  acceptance (accepted + 1) / (answered + 2) over its last 50 answered
                  offers (order_offer jobs closed 'accepted', 'declined' or
                  'expired'); a provider with none starts at 0.5
    L  load       1 − (its orders overlapping the window + offers awaiting its
                  reply) / capacity, at least 0
    F  fairness   1 − its orders in the last 30 days / the most any candidate had;
                  1 for everyone when nobody had any — small franchisees are not starved

Ties go to the nearer provider, then the lower id. Each candidate carries its
figures, its parts and the reasons in Chinese and English, so the operator sees
why it is where it is and may offer to another.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import asyncpg

from dispatch.config import OrdersConfig
from dispatch.database import Conn
from dispatch.orders import Order
from dispatch.team_choice import great_circle_km

ANSWERS_CONSIDERED = 50
FAIRNESS_DAYS = 30


@dataclass(frozen=True)
class ScoreWeights:
    distance: float
    rating: float
    acceptance: float
    load: float
    fairness: float
    distance_half_km: float

    @classmethod
    def from_config(cls, config: OrdersConfig) -> ScoreWeights:
        return cls(
            distance=config.weight_distance,
            rating=config.weight_rating,
            acceptance=config.weight_acceptance,
            load=config.weight_load,
            fairness=config.weight_fairness,
            distance_half_km=config.distance_half_km,
        )


@dataclass(frozen=True)
class ProviderFigures:
    """What the query knows about one candidate."""

    provider_id: int
    name: str
    price_fen: int
    distance_km: float | None
    rating: float | None
    accepted: int
    answered: int
    busy_in_window: int
    pending_offers: int
    capacity: int
    orders_30d: int


@dataclass(frozen=True)
class ScoreParts:
    distance: float
    rating: float
    acceptance: float
    load: float
    fairness: float

    def as_json(self) -> dict[str, float]:
        return {
            "distance": round(self.distance, 4),
            "rating": round(self.rating, 4),
            "acceptance": round(self.acceptance, 4),
            "load": round(self.load, 4),
            "fairness": round(self.fairness, 4),
        }


@dataclass(frozen=True)
class Reason:
    zh: str
    en: str


@dataclass(frozen=True)
class Candidate:
    figures: ProviderFigures
    parts: ScoreParts
    score: float
    reasons: tuple[Reason, ...]

    @property
    def provider_id(self) -> int:
        return self.figures.provider_id

    def as_json(self, rank: int) -> dict[str, Any]:
        f = self.figures
        return {
            "rank": rank,
            "provider_id": f.provider_id,
            "name": f.name,
            "price_fen": f.price_fen,
            "score": round(self.score, 4),
            "parts": self.parts.as_json(),
            "distance_km": round(f.distance_km, 2) if f.distance_km is not None else None,
            "rating": f.rating,
            "accepted": f.accepted,
            "answered": f.answered,
            "busy_in_window": f.busy_in_window,
            "pending_offers": f.pending_offers,
            "capacity": f.capacity,
            "orders_30d": f.orders_30d,
            "reasons": [{"zh": r.zh, "en": r.en} for r in self.reasons],
        }


def score_parts(figures: ProviderFigures, *, most_orders_30d: int, distance_half_km: float) -> ScoreParts:
    """The five parts of the score, each 0-1, as the module docstring defines them."""
    distance = 0.0 if figures.distance_km is None else 1 / (1 + figures.distance_km / distance_half_km)
    rating = 0.5 if figures.rating is None else (figures.rating - 1) / 4
    acceptance = (figures.accepted + 1) / (figures.answered + 2)
    used = figures.busy_in_window + figures.pending_offers
    load = max(0.0, 1 - used / figures.capacity) if figures.capacity > 0 else 0.0
    fairness = 1.0 if most_orders_30d == 0 else 1 - figures.orders_30d / most_orders_30d
    return ScoreParts(distance, rating, acceptance, load, fairness)


def weighted_score(parts: ScoreParts, weights: ScoreWeights) -> float:
    total = weights.distance + weights.rating + weights.acceptance + weights.load + weights.fairness
    return (
        weights.distance * parts.distance
        + weights.rating * parts.rating
        + weights.acceptance * parts.acceptance
        + weights.load * parts.load
        + weights.fairness * parts.fairness
    ) / total


def reasons_for(figures: ProviderFigures) -> tuple[Reason, ...]:
    f = figures
    if f.distance_km is None:
        distance = Reason("位置未知，按最远计", "no location on file: counted as far away")
    else:
        distance = Reason(f"距离 {f.distance_km:.1f} 公里", f"{f.distance_km:.1f} km away")
    if f.rating is None:
        rating = Reason("暂无评分", "not rated yet")
    else:
        rating = Reason(f"评分 {f.rating:.1f}", f"rated {f.rating:.1f}")
    if f.answered == 0:
        acceptance = Reason("尚无派单回复记录", "has not answered an offer yet")
    else:
        acceptance = Reason(
            f"最近 {f.answered} 次派单接了 {f.accepted} 次",
            f"accepted {f.accepted} of its last {f.answered} offers",
        )
    load = Reason(
        f"该时段已有 {f.busy_in_window}/{f.capacity} 单，{f.pending_offers} 个派单待回复",
        f"{f.busy_in_window} of {f.capacity} places taken in the window, "
        f"{f.pending_offers} offers awaiting its reply",
    )
    fairness = Reason(
        f"近{FAIRNESS_DAYS}天接单 {f.orders_30d} 个",
        f"{f.orders_30d} orders in the last {FAIRNESS_DAYS} days",
    )
    return (distance, rating, acceptance, load, fairness)


def rank(figures: list[ProviderFigures], weights: ScoreWeights) -> list[Candidate]:
    """Score and order the candidates, best first."""
    most = max((f.orders_30d for f in figures), default=0)
    candidates = []
    for f in figures:
        parts = score_parts(f, most_orders_30d=most, distance_half_km=weights.distance_half_km)
        candidates.append(Candidate(f, parts, weighted_score(parts, weights), reasons_for(f)))
    candidates.sort(
        key=lambda c: (
            -c.score,
            c.figures.distance_km if c.figures.distance_km is not None else math.inf,
            c.figures.provider_id,
        )
    )
    return candidates


# $1 order, $2 resident, $3 item, $4 window start, $5 window end, $6 now. The providers serving the
# place are gathered into an array first, so each is then read by its primary key: a join on the
# whole providers table lets the planner choose a scan of every provider instead.
CANDIDATES_QUERY = f"""
WITH place AS (
    SELECT coalesce(r.lat, c.lat) AS lat, coalesce(r.lon, c.lon) AS lon, r.community_id, s.district_id
    FROM residents r
    LEFT JOIN communities c ON c.id = r.community_id
    LEFT JOIN streets s ON s.id = c.street_id
    WHERE r.id = $2
), serving AS (
    SELECT array_agg(a.provider_id) AS ids FROM provider_areas a, place
    WHERE a.community_id = place.community_id OR a.district_id = place.district_id
)
SELECT p.id, p.name, i.price_fen, p.base_lat, p.base_lon, p.rating, p.capacity,
       place.lat AS home_lat, place.lon AS home_lon,
       busy.n AS busy, pending.n AS pending, recent.n AS orders_30d, answers.accepted, answers.answered
FROM providers p
JOIN provider_items i ON i.provider_id = p.id AND i.item_code = $3
CROSS JOIN place
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM service_orders o
    WHERE o.provider_id = p.id AND o.state IN ('accepted', 'in_service')
      AND o.window_start < $5 AND o.window_end > $4 AND o.id <> $1
) busy
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM order_offers f WHERE f.provider_id = p.id AND f.outcome IS NULL
) pending
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM service_orders o
    WHERE o.provider_id = p.id AND o.accepted_at > $6::timestamptz - interval '{FAIRNESS_DAYS} days'
) recent
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE close_reason = 'accepted') AS accepted, count(*) AS answered
    FROM (SELECT j.close_reason FROM sms_jobs j
          WHERE j.kind = 'order_offer' AND j.party_type = 'provider' AND j.party_id = p.id
            AND j.close_reason IN ('accepted', 'declined', 'expired')
          ORDER BY j.closed_at DESC LIMIT {ANSWERS_CONSIDERED}) latest
) answers
WHERE p.id = ANY((SELECT ids FROM serving)::bigint[]) AND p.status = 'active'
  AND busy.n < p.capacity
  AND NOT EXISTS (
      SELECT 1 FROM order_offers x
      WHERE x.order_id = $1 AND x.provider_id = p.id
        AND (x.outcome IS NULL OR x.outcome IN ('declined', 'expired', 'cancelled')
             OR x.withdrawn_at IS NOT NULL))
"""


def _figures(row: asyncpg.Record) -> ProviderFigures:
    located = None not in (row["base_lat"], row["base_lon"], row["home_lat"], row["home_lon"])
    return ProviderFigures(
        provider_id=row["id"],
        name=row["name"],
        price_fen=row["price_fen"],
        distance_km=great_circle_km(row["home_lat"], row["home_lon"], row["base_lat"], row["base_lon"])
        if located
        else None,
        rating=float(row["rating"]) if row["rating"] is not None else None,
        accepted=int(row["accepted"]),
        answered=int(row["answered"]),
        busy_in_window=int(row["busy"]),
        pending_offers=int(row["pending"]),
        capacity=int(row["capacity"]),
        orders_30d=int(row["orders_30d"]),
    )


async def rank_candidates(
    conn: Conn, order: Order, now: dt.datetime, weights: ScoreWeights
) -> list[Candidate]:
    """Every provider that may be offered this order now, best first, with its reasons."""
    rows = await conn.fetch(
        CANDIDATES_QUERY,
        order.id,
        order.resident_id,
        order.item_code,
        order.window_start,
        order.window_end,
        now,
    )
    return rank([_figures(r) for r in rows], weights)
