"""`/api/v1/providers`: list franchised providers by status, service item and district; read one.

Each provider comes with its figures: `rating` (kept by the service lane's
follow-up calls) and, from its order offers of the last 90 days,
`acceptance_rate` and `median_response_seconds` (see `providers.provider_figures`).
Creating, editing, suspending and reactivating are in `provider_admin`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.errors import bad_request, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.api.paging import PAGING_PARAMETERS, page, page_params, page_schema, query_text, text_parameter
from dispatch.database import Conn
from dispatch.geography import BIGSERIAL_MAX, PlaceError, as_id, resolve_district
from dispatch.phones import PhoneBook
from dispatch.runtime import Runtime
from providers.catalogue import get_item
from providers.provider_figures import NO_FIGURES, ProviderFigures, provider_figures
from providers.provider_input import ProviderStatus
from providers.registry import Provider, ProviderCard, get_provider, search_providers

routes = web.RouteTableDef()


def provider_json(provider: Provider, book: PhoneBook, figures: ProviderFigures) -> dict[str, Any]:
    return {
        "id": provider.id,
        "licence_no": provider.licence_no,
        "name": provider.name,
        "contact_name": provider.contact_name,
        "phone": provider.phone_e164,
        "sms": provider.sms_e164,
        "sms_display": book.national(provider.sms_e164),
        "address": provider.address,
        "base_lat": provider.base_lat,
        "base_lon": provider.base_lon,
        "capacity": provider.capacity,
        "status": provider.status.value,
        "rating": provider.rating,
        "acceptance_rate": figures.acceptance_rate,
        "median_response_seconds": figures.median_response_seconds,
        "offers_90d": figures.offers,
        "created_at": provider.created_at.isoformat(),
        "updated_at": provider.updated_at.isoformat(),
    }


def card_json(card: ProviderCard, book: PhoneBook, figures: ProviderFigures) -> dict[str, Any]:
    return {
        **provider_json(card.provider, book, figures),
        "items": [
            {
                "code": i.item_code,
                "name_zh": i.name_zh,
                "name_en": i.name_en,
                "category": i.category_code,
                "unit": i.unit,
                "price_fen": i.price_fen,
            }
            for i in card.items
        ],
        "areas": [
            {
                "district_id": a.district_id,
                "district": a.district,
                "community_id": a.community_id,
                "community": a.community,
            }
            for a in card.areas
        ],
    }


async def provider_card_json(conn: Conn, runtime: Runtime, provider_id: int) -> dict[str, Any] | None:
    """The card as `GET /api/v1/providers/{id}` shows it, figures included; None if there is none."""
    card = await get_provider(conn, provider_id)
    if card is None:
        return None
    figures = await provider_figures(conn, [provider_id], runtime.clock())
    return card_json(card, runtime.phones, figures.get(provider_id, NO_FIGURES))


@routes.get("/api/v1/providers")
async def list_providers(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    limit, offset = page_params(request.query)
    status_text = query_text(request.query, "status")
    item = query_text(request.query, "item")
    district = query_text(request.query, "district")
    name = query_text(request.query, "q")
    status = None
    if status_text is not None:
        if status_text not in set(ProviderStatus):
            raise bad_request("status", f"expected one of {', '.join(ProviderStatus)}")
        status = ProviderStatus(status_text)
    async with runtime.pool.acquire() as conn:
        if item is not None:
            item = item.upper()
            if await get_item(conn, item) is None:
                raise bad_request("item", f"no service item {item!r}")
        district_id = None
        if district is not None:
            try:
                district_id = (await resolve_district(conn, district)).id
            except PlaceError as exc:
                raise bad_request("district", str(exc)) from None
        rows, total = await search_providers(
            conn,
            status=status,
            item_code=item,
            district_id=district_id,
            name_fragment=name,
            limit=limit,
            offset=offset,
        )
        # One query for the whole page, not one per provider.
        figures = await provider_figures(conn, [p.id for p in rows], runtime.clock())
    items = [provider_json(p, runtime.phones, figures.get(p.id, NO_FIGURES)) for p in rows]
    return ok(page(items, total, limit, offset))


@routes.get(r"/api/v1/providers/{id:\d+}")
async def provider_card(request: web.Request) -> web.Response:
    current_user(request)
    runtime = request.app[RUNTIME]
    provider_id = as_id(request.match_info["id"], BIGSERIAL_MAX)
    if provider_id is None:
        raise not_found("provider")
    async with runtime.pool.acquire() as conn:
        body = await provider_card_json(conn, runtime, provider_id)
    if body is None:
        raise not_found("provider")
    return ok(body)


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


_PROVIDER_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "licence_no": {"type": "string", "description": "统一社会信用代码 or 15-digit licence number"},
    "name": {"type": "string"},
    "contact_name": {"type": "string"},
    "phone": _nullable("string"),
    "sms": {"type": "string", "description": "E.164 number job offers are texted to"},
    "sms_display": {"type": "string"},
    "address": {"type": "string"},
    "base_lat": _nullable("number"),
    "base_lon": _nullable("number"),
    "capacity": {"type": "integer", "description": "jobs it can run at once"},
    "status": {"type": "string", "enum": list(ProviderStatus)},
    "rating": {
        "type": ["number", "null"],
        "minimum": 1,
        "maximum": 5,
        "description": "residents' rating from follow-up calls (回访), kept up to date by the service lane",
    },
    "acceptance_rate": {
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": 1,
        "description": "of the order offers closed in the last 90 days, accepted / (accepted + declined "
        "+ expired); null without such offers",
    },
    "median_response_seconds": {
        "type": ["number", "null"],
        "description": "median time from an offer to the provider's first SMS about it, over those "
        "offers; null when none was answered by SMS",
    },
    "offers_90d": {
        "type": "integer",
        "minimum": 0,
        "description": "how many offers the two figures above count",
    },
    "created_at": {"type": "string", "format": "date-time"},
    "updated_at": {"type": "string", "format": "date-time"},
}

SCHEMAS: dict[str, Any] = {
    "Provider": {
        "type": "object",
        "required": ["id", "licence_no", "name", "sms", "capacity", "status"],
        "properties": _PROVIDER_PROPERTIES,
    },
    "ProviderPage": page_schema("Provider"),
    "ProviderCard": {
        "type": "object",
        "required": ["id", "licence_no", "name", "sms", "capacity", "status", "items", "areas"],
        "properties": {
            **_PROVIDER_PROPERTIES,
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["code", "price_fen"],
                    "properties": {
                        "code": {"type": "string"},
                        "name_zh": {"type": "string"},
                        "name_en": {"type": "string"},
                        "category": {"type": "string"},
                        "unit": {"type": "string", "enum": ["visit", "hour", "meal", "item"]},
                        "price_fen": {"type": "integer", "description": "this provider's price, in fen"},
                    },
                },
            },
            "areas": {
                "type": "array",
                "description": "whole districts (community null) or single communities",
                "items": {
                    "type": "object",
                    "required": ["district_id", "district"],
                    "properties": {
                        "district_id": {"type": "integer"},
                        "district": {"type": "string"},
                        "community_id": _nullable("integer"),
                        "community": _nullable("string"),
                    },
                },
            },
        },
    },
}

OPENAPI: dict[str, Any] = {
    "/api/v1/providers": {
        "get": {
            "summary": "List providers, filtered by status, service item and district served",
            "operationId": "listProviders",
            "tags": ["providers"],
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(ProviderStatus)},
                },
                text_parameter("item", "a service item code (HK01): providers offering it"),
                text_parameter(
                    "district",
                    "a district id, code or name: providers serving all of it or one of its communities",
                ),
                text_parameter("q", "part of the provider's name"),
                *PAGING_PARAMETERS,
            ],
            "responses": {
                "200": {
                    "description": "a page of providers",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ProviderPage"}}
                    },
                },
                "400": error_response("a query parameter is wrong; `error.field` names it"),
                "401": error_response("no or an invalid bearer token"),
            },
        }
    },
    "/api/v1/providers/{id}": {
        "get": {
            "summary": "A provider with the items it offers (at its prices) and the areas it serves",
            "operationId": "getProvider",
            "tags": ["providers"],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
            ],
            "responses": {
                "200": {
                    "description": "the provider",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ProviderCard"}}
                    },
                },
                "401": error_response("no or an invalid bearer token"),
                "404": error_response("no such provider"),
            },
        }
    },
}
