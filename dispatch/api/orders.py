"""`/api/v1/orders`: the service lane for the console and integrations.

One POST per action. An action the order's state does not allow is 409 with the
current state, so a console that lost a race (a provider's SMS came first) shows
what happened instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.bodies import choice_field, int_field, json_object, text_field, time_field
from dispatch.api.errors import ApiError, bad_request, not_found, ok
from dispatch.api.keys import ORDER_DESK, RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params, page_schema, time_param
from dispatch.database import Conn
from dispatch.deadlines import pending_deadlines
from dispatch.events import timeline
from dispatch.matching import Candidate
from dispatch.offers import OrderOffer, offers_of
from dispatch.order_desk import NoCandidate, Offered, OrderDesk
from dispatch.orders import (
    EvidenceSource,
    IllegalTransition,
    InvalidOrder,
    OrderError,
    OrderNotFound,
    OrderSource,
    OrderState,
    get_order,
    list_orders,
    visit_evidence,
)
from dispatch.visit_desk import VisitStep

routes = web.RouteTableDef()


# States in which the order still looks for a provider: the detail shows the live ranking.
SEEKING = (OrderState.NEW, OrderState.OFFERED, OrderState.UNFILLED)
# What an operator may record a visit as: typed in from a phone call, or sent by an integration.
API_SOURCES = (EvidenceSource.API, EvidenceSource.CALL)
MAX_ID = 2**63 - 1


def order_error(exc: OrderError) -> ApiError:
    if isinstance(exc, IllegalTransition):
        return ApiError(409, exc.code, str(exc), state=exc.current.value)
    if isinstance(exc, OrderNotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, InvalidOrder):
        return ApiError(400, exc.code, str(exc), field=exc.field)
    if isinstance(exc, NoCandidate):
        return ApiError(409, exc.code, str(exc))
    return ApiError(400, exc.code, str(exc))


def _order_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise not_found("order")
    return int(raw)


def _id_query(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name, "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID):
        raise bad_request(name, "expected an id")
    return int(raw)


def _rating(body: Mapping[str, Any]) -> int:
    rating = int_field(body, "rating", required=True)
    assert rating is not None
    if rating > 5:
        raise bad_request("rating", "expected a whole number from 1 to 5")
    return rating


def offer_json(offer: OrderOffer, names: Mapping[int, str], codes: Mapping[int, str]) -> dict[str, Any]:
    return {
        **offer.as_json(),
        "provider_name": names.get(offer.provider_id, ""),
        "job_code": codes.get(offer.job_id, ""),
    }


async def _offers_json(conn: Conn, offers: list[OrderOffer]) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT f.provider_id, p.name, f.job_id, j.code FROM order_offers f
           JOIN providers p ON p.id = f.provider_id JOIN sms_jobs j ON j.id = f.job_id
           WHERE f.id = ANY($1::bigint[])""",
        [o.id for o in offers],
    )
    names = {r["provider_id"]: r["name"] for r in rows}
    codes = {r["job_id"]: r["code"] for r in rows}
    return [offer_json(o, names, codes) for o in offers]


def _candidates_json(candidates: list[Candidate]) -> list[dict[str, Any]]:
    return [c.as_json(rank) for rank, c in enumerate(candidates, start=1)]


async def _offered_json(request: web.Request, offered: Offered) -> dict[str, Any]:
    async with request.app[RUNTIME].pool.acquire() as conn:
        offers = await _offers_json(conn, offered.offers)
    return {
        "order": offered.order.as_json(),
        "split": offered.order.split.as_json(),
        "candidates": _candidates_json(offered.candidates),
        "offers": offers,
    }


@routes.get("/api/v1/orders")
async def orders_list(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit, offset = page_params(request.query)
    state_raw = request.query.get("state")
    try:
        state = OrderState(state_raw) if state_raw else None
    except ValueError:
        raise bad_request("state", f"expected one of {', '.join(s.value for s in OrderState)}") from None
    async with runtime.pool.acquire() as conn:
        orders, total = await list_orders(
            conn,
            since=time_param(request.query),
            state=state,
            resident_id=_id_query(request.query, "resident"),
            provider_id=_id_query(request.query, "provider"),
            limit=limit,
            offset=offset,
        )
    return ok(page([o.as_json() for o in orders], total, limit, offset))


@routes.get(r"/api/v1/orders/{id:\d+}")
async def order_detail(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    desk = request.app[ORDER_DESK]
    order_id = _order_id(request)
    async with runtime.pool.acquire() as conn:
        try:
            order = await get_order(conn, order_id)
        except OrderNotFound:
            raise not_found("order") from None
        candidates = await desk.candidates(conn, order) if order.state in SEEKING else []
        offers = await _offers_json(conn, await offers_of(conn, order_id))
        evidence = await visit_evidence(conn, order_id)
        deadlines = await pending_deadlines(conn, "order", order_id)
        entries = await timeline(conn, "order", order_id)
    return ok(
        {
            "order": order.as_json(),
            "split": order.split.as_json(),
            "candidates": _candidates_json(candidates),
            "offers": offers,
            "evidence": [e.as_json() for e in evidence],
            "deadlines": [{"kind": d.kind, "due_at": d.due_at.isoformat()} for d in deadlines],
            "timeline": [e.as_json() for e in entries],
        }
    )


@routes.post("/api/v1/orders")
async def order_create(request: web.Request) -> web.Response:
    """An operator takes an order on the phone; it is offered at once."""
    user = current_user(request)
    body = await json_object(request, empty_ok=False)
    resident_id = int_field(body, "resident_id", required=True)
    item_code = text_field(body, "item_code", required=True, max_length=64)
    start = time_field(body, "window_start", required=True)
    end = time_field(body, "window_end", required=True)
    notes = text_field(body, "notes")
    try:
        offered = await request.app[ORDER_DESK].create_order(
            resident_id=resident_id,
            item_code=item_code,
            window_start=start,
            window_end=end,
            notes=notes,
            source=OrderSource.OPERATOR,
            actor=f"user:{user.username}",
        )
    except OrderError as exc:
        raise order_error(exc) from None
    return ok(await _offered_json(request, offered), status=201)


Action = Callable[[web.Request, OrderDesk, int, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def _offer(
    request: web.Request, desk: OrderDesk, order_id: int, actor: str, body: dict[str, Any]
) -> dict[str, Any]:
    offered = await desk.offer(
        order_id, actor, provider_id=int_field(body, "provider_id"), reason=text_field(body, "reason")
    )
    return await _offered_json(request, offered)


async def _re_offer(
    request: web.Request, desk: OrderDesk, order_id: int, actor: str, body: dict[str, Any]
) -> dict[str, Any]:
    offered = await desk.re_offer(
        order_id, actor, provider_id=int_field(body, "provider_id"), reason=text_field(body, "reason")
    )
    return await _offered_json(request, offered)


def _source(body: Mapping[str, Any]) -> EvidenceSource:
    source = choice_field(body, "source", EvidenceSource, default=EvidenceSource.API)
    if source not in API_SOURCES:
        raise bad_request("source", f"expected one of {', '.join(s.value for s in API_SOURCES)}")
    return source


def _visit(step: VisitStep) -> Action:
    async def record(
        request: web.Request, desk: OrderDesk, order_id: int, actor: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        order = await desk.record_visit(
            order_id,
            step,
            actor,
            source=_source(body),
            at=time_field(body, "at"),
            note_text=text_field(body, "note"),
        )
        return {"order": order.as_json()}

    return record


async def _confirm(
    request: web.Request, desk: OrderDesk, order_id: int, actor: str, body: dict[str, Any]
) -> dict[str, Any]:
    order = await desk.confirm(order_id, actor, rating=_rating(body), note_text=text_field(body, "note"))
    return {"order": order.as_json()}


async def _rate(
    request: web.Request, desk: OrderDesk, order_id: int, actor: str, body: dict[str, Any]
) -> dict[str, Any]:
    order = await desk.rate(order_id, actor, rating=_rating(body), note_text=text_field(body, "note"))
    return {"order": order.as_json()}


async def _cancel(
    request: web.Request, desk: OrderDesk, order_id: int, actor: str, body: dict[str, Any]
) -> dict[str, Any]:
    order = await desk.cancel(order_id, actor, reason=text_field(body, "reason", required=True))
    return {"order": order.as_json()}


_OFFER_FIELDS = {
    "provider_id": {
        "type": "integer",
        "minimum": 1,
        "description": "offer to this provider (the operator's choice)",
    },
    "reason": {"type": "string", "maxLength": 2000},
}
_VISIT_FIELDS = {
    "source": {"type": "string", "enum": [s.value for s in API_SOURCES], "default": "api"},
    "at": {"type": "string", "format": "date-time", "description": "when it happened, if not now"},
    "note": {"type": "string", "maxLength": 2000},
}
_RATING_FIELDS = {
    "rating": {"type": "integer", "minimum": 1, "maximum": 5},
    "note": {"type": "string", "maxLength": 2000},
}

_OFFERED = {
    "type": "object",
    "properties": {
        "order": {"$ref": "#/components/schemas/Order"},
        "split": {"$ref": "#/components/schemas/SubsidySplit"},
        "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/Candidate"}},
        "offers": {"type": "array", "items": {"type": "object"}},
    },
}

_ORDER_ONLY = {"type": "object", "properties": {"order": {"$ref": "#/components/schemas/Order"}}}

# name → (handler, summary, body fields, required fields, response schema)
ACTIONS: dict[str, tuple[Action, str, dict[str, Any], list[str], dict[str, Any]]] = {
    "offer": (
        _offer,
        "Offer a new or unfilled order: to the best candidates, or to provider_id (the operator's choice)",
        _OFFER_FIELDS,
        [],
        _OFFERED,
    ),
    "re-offer": (
        _re_offer,
        "Take the order back from the provider(s) it is with; offer it to the next candidate or provider_id",
        _OFFER_FIELDS,
        [],
        _OFFERED,
    ),
    "check-in": (
        _visit(VisitStep.CHECK_IN),
        "The provider arrived (as its SMS reply '3 <code>')",
        _VISIT_FIELDS,
        [],
        _ORDER_ONLY,
    ),
    "check-out": (
        _visit(VisitStep.CHECK_OUT),
        "The service is done (as its SMS reply '9 <code>')",
        _VISIT_FIELDS,
        [],
        _ORDER_ONLY,
    ),
    "confirm": (
        _confirm,
        "The follow-up call (回访) confirmed the service with the resident's rating; 1-2 opens a complaint",
        _RATING_FIELDS,
        ["rating"],
        _ORDER_ONLY,
    ),
    "rate": (
        _rate,
        "Record or change the resident's rating; 1-2 on a completed or confirmed order opens a complaint",
        _RATING_FIELDS,
        ["rating"],
        _ORDER_ONLY,
    ),
    "cancel": (
        _cancel,
        "Cancel the order (reason required); providers holding offers are told",
        {"reason": {"type": "string", "minLength": 1, "maxLength": 2000}},
        ["reason"],
        _ORDER_ONLY,
    ),
}


def _action_handler(action: Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        user = current_user(request)
        body = await json_object(request)
        try:
            result = await action(
                request, request.app[ORDER_DESK], _order_id(request), f"user:{user.username}", body
            )
        except OrderError as exc:
            raise order_error(exc) from None
        return ok(result)

    return handler


for _name, _spec in ACTIONS.items():
    routes.post(rf"/api/v1/orders/{{id:\d+}}/{_name}")(_action_handler(_spec[0]))


def _id_param() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


OPENAPI: dict[str, Any] = {
    "/api/v1/orders": {
        "get": {
            "summary": "Service orders, newest first",
            "parameters": [
                *PAGING_PARAMETERS,
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": [s.value for s in OrderState]},
                },
                {"name": "resident", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "provider", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": {
                "200": _json("a page of orders", page_schema("Order")),
                "400": error_response("a bad filter"),
                "401": error_response("no or bad token"),
            },
        },
        "post": {
            "summary": "Take an order (an operator, on the phone): priced, split, ranked and offered at once",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["resident_id", "item_code", "window_start", "window_end"],
                            "properties": {
                                "resident_id": {"type": "integer", "minimum": 1},
                                "item_code": {"type": "string", "maxLength": 64},
                                "window_start": {"type": "string", "format": "date-time"},
                                "window_end": {"type": "string", "format": "date-time"},
                                "notes": {"type": "string", "maxLength": 2000},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json("the order, its ranked candidates with reasons, and the offers sent", _OFFERED),
                "400": error_response("a bad field (named in the error)"),
                "401": error_response("no or bad token"),
            },
        },
    },
    "/api/v1/orders/{id}": {
        "get": {
            "summary": "One order: state, subsidy split, live candidates, offers, visit evidence, timeline",
            "parameters": [_id_param()],
            "responses": {
                "200": _json("the order"),
                "401": error_response("no or bad token"),
                "404": error_response("no such order"),
            },
        }
    },
}

for _name, (_, _summary, _fields, _required, _response) in ACTIONS.items():
    _body_schema: dict[str, Any] = {"type": "object", "properties": _fields}
    if _required:
        _body_schema["required"] = _required
    OPENAPI[f"/api/v1/orders/{{id}}/{_name}"] = {
        "post": {
            "summary": _summary,
            "parameters": [_id_param()],
            "requestBody": {
                "required": bool(_required),
                "content": {"application/json": {"schema": _body_schema}},
            },
            "responses": {
                "200": _json("the order after the action", _response),
                "400": error_response("a bad or missing field"),
                "401": error_response("no or bad token"),
                "404": error_response("no such order"),
                "409": error_response(
                    "the order's state does not allow this action (the error names the state), "
                    "or nobody can be offered it"
                ),
            },
        }
    }

SCHEMAS: dict[str, Any] = {
    "Order": {
        "type": "object",
        "required": ["id", "state", "resident_id", "item_code", "window_start", "window_end", "price_fen"],
        "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string", "enum": [s.value for s in OrderState]},
            "resident_id": {"type": "integer"},
            "item_code": {"type": "string"},
            "urgent": {"type": "boolean"},
            "window_start": {"type": "string", "format": "date-time"},
            "window_end": {"type": "string", "format": "date-time"},
            "provider_id": {"type": ["integer", "null"]},
            "price_fen": {"type": "integer"},
            "covered_fen": {"type": "integer"},
            "copay_fen": {"type": "integer"},
            "not_eligible_fen": {"type": "integer"},
            "rating": {"type": ["integer", "null"]},
            "service_seconds": {"type": ["integer", "null"]},
        },
    },
    "SubsidySplit": {
        "type": "object",
        "properties": {
            "price_fen": {"type": "integer"},
            "covered_fen": {"type": "integer", "description": "paid by the subsidy programme"},
            "copay_fen": {"type": "integer", "description": "the resident's share of the eligible part"},
            "not_eligible_fen": {
                "type": "integer",
                "description": "not covered: item not eligible, no programme, or over the month's allowance",
            },
            "programme": {"type": ["string", "null"]},
            "month": {"type": "string", "format": "date"},
            "allowance_fen": {"type": "integer"},
            "allowance_left_fen": {"type": "integer", "description": "before this order"},
            "reasons": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Candidate": {
        "type": "object",
        "properties": {
            "rank": {"type": "integer"},
            "provider_id": {"type": "integer"},
            "name": {"type": "string"},
            "score": {"type": "number", "description": "0-1, the weighted mean of the parts"},
            "parts": {
                "type": "object",
                "description": "distance, rating, acceptance, load, fairness: each 0-1 (see matching)",
            },
            "reasons": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"zh": {"type": "string"}, "en": {"type": "string"}},
                },
            },
        },
    },
}
