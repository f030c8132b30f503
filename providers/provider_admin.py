"""Creating and editing a provider by hand (console, API), each change an event row.

The record goes through the same `upsert_provider` as an import, so a form and
a spreadsheet can never disagree about what a provider is. An edit that
changes nothing writes nothing: no event, and `updated_at` stays put. Events
name the fields that changed, never their values (phone numbers are among
them). Suspending and reactivating are in `providers.suspension`.
"""

from __future__ import annotations

from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event
from providers.provider_input import ProviderInput
from providers.registry import Provider, provider_by_licence, provider_input_of, upsert_provider

# ProviderInput fields as the API names them; the licence number is the key and never edited.
EDITABLE = {
    "name": "name",
    "contact_name": "contact_name",
    "phone_e164": "phone",
    "sms_e164": "sms",
    "address": "address",
    "base_lat": "base_lat",
    "base_lon": "base_lon",
    "capacity": "capacity",
    "items": "items",
    "areas": "areas",
}


class ProviderExists(Exception):
    def __init__(self, provider_id: int) -> None:
        super().__init__(f"a provider with this licence number exists (id {provider_id})")
        self.provider_id = provider_id


async def create_provider(
    conn: Conn, provider: ProviderInput, *, actor: str, reason: str = ""
) -> tuple[Provider, DomainEvent]:
    """A new provider, or ProviderExists when its licence number is taken."""
    async with conn.transaction():
        # Two creates of one licence number at once: the second waits here, then finds the first.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"provider:{provider.licence_no}"
        )
        existing = await provider_by_licence(conn, provider.licence_no)
        if existing is not None:
            raise ProviderExists(existing.id)
        saved, _ = await upsert_provider(conn, provider)
        event = await append_event(
            conn,
            subject_type="provider",
            subject_id=saved.id,
            kind="provider.created",
            actor=actor,
            to_state=saved.status.value,
            reason=reason,
            data={"licence_no": saved.licence_no, "name": saved.name},
        )
    return saved, event


async def provider_for_edit(conn: Conn, provider_id: int) -> ProviderInput | None:
    """The stored provider in input form, its row locked until the caller's transaction ends
    (so that an edit merges onto what is stored, not onto what a racing edit replaces)."""
    licence_no: str | None = await conn.fetchval(
        "SELECT licence_no FROM providers WHERE id = $1 FOR UPDATE", provider_id
    )
    if licence_no is None:
        return None
    return await provider_input_of(conn, licence_no)


def changed_fields(before: ProviderInput, after: ProviderInput) -> list[str]:
    return [api for field, api in EDITABLE.items() if getattr(before, field) != getattr(after, field)]


async def save_provider_edit(
    conn: Conn, before: ProviderInput, after: ProviderInput, *, actor: str, reason: str = ""
) -> tuple[Provider, DomainEvent | None]:
    """Store `after` over `before` (from `provider_for_edit`, same transaction); the event names
    the fields that changed, and is None when nothing did."""
    if (after.licence_no, after.status) != (before.licence_no, before.status):
        raise ValueError("an edit keeps the licence number and the status")
    async with conn.transaction():
        saved, changed = await upsert_provider(conn, after)
        if not changed:
            return saved, None
        # Compare what is stored now, prices and areas resolved: `HK01` at list price and
        # `HK01:40` are the same offer when the list price is 40.
        stored = await provider_input_of(conn, saved.licence_no)
        assert stored is not None
        event = await append_event(
            conn,
            subject_type="provider",
            subject_id=saved.id,
            kind="provider.updated",
            actor=actor,
            reason=reason,
            data={"fields": changed_fields(before, stored)},
        )
    return saved, event
