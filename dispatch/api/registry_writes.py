"""What the registry's write routes (providers, teams) share: records read from JSON bodies with
every bad field reported at once, and the suspend/reactivate routes.

`bodies.py`'s readers stop at the first bad field, which suits an action with
one or two fields. A registry record has a dozen, and a form should be able to
mark every wrong box after one request, so `FieldReader` runs those readers
(and the few shapes they do not cover: numbers, lists, nested objects) and
collects their complaints in a `Checker`; `invalid()` turns the InvalidInput
raised at the end into the 400, `error.fields` listing each field and why.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Literal, TypeVar

from aiohttp import web

from dispatch.api.auth import current_user
from dispatch.api.bodies import json_object, text_field
from dispatch.api.errors import ApiError, not_found, ok
from dispatch.api.keys import RUNTIME
from dispatch.api.openapi import error_response
from dispatch.database import Conn
from dispatch.geography import BIGSERIAL_MAX, as_id
from dispatch.runtime import Runtime
from dispatch.users import Role, User
from dispatch.validation import Checker, FieldError, InvalidInput
from providers.suspension import AdminOnly, StatusConflict, Subject, SubjectNotFound, reactivate, suspend

T = TypeVar("T")
MAX_ENTRIES = 1000


def invalid(exc: InvalidInput) -> ApiError:
    return ApiError(
        400,
        "invalid",
        str(exc),
        field=exc.errors[0].field,
        fields=[{"field": e.field, "reason": e.reason} for e in exc.errors],
    )


def actor_of(user: User) -> str:
    """Who did it, as the event log writes it."""
    return f"user:{user.username}"


def _storable(text: str) -> bool:
    # PostgreSQL text takes no NUL and UTF-8 has no lone surrogates: refused here, they would be a 500.
    return not any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r" for ch in text)


def _name(key: str) -> str:
    """A body key as it can be echoed back in an error (it may be anything)."""
    return key[:60].encode("utf-8", "replace").decode()


class FieldReader:
    """One JSON object of a record (or a nested entry, `prefix` naming where it sits)."""

    def __init__(
        self,
        body: Mapping[str, Any],
        allowed: Collection[str],
        *,
        checker: Checker | None = None,
        prefix: str = "",
        unreadable: set[str] | None = None,
    ) -> None:
        self.body = body
        self.checker = checker if checker is not None else Checker()
        self.prefix = prefix
        # shared with nested entries' readers, like the checker
        self.unreadable: set[str] = unreadable if unreadable is not None else set()
        for key in body:
            if key not in allowed:
                self.fail(_name(key), f"not a field here (expected {', '.join(sorted(allowed))})")

    def fail(self, name: str, reason: str) -> None:
        """The field cannot be read as what it should be; a placeholder stands in for it."""
        self._record(FieldError(self.prefix + name, reason), unreadable=True)

    def reject(self, name: str, reason: str) -> None:
        """The field reads well but its value is wrong."""
        self._record(FieldError(self.prefix + name, reason), unreadable=False)

    def _record(self, error: FieldError, *, unreadable: bool) -> None:
        # Whatever is said later about an unreadable field or its parts (the domain saw only the
        # placeholder) would repeat the first complaint.
        field = error.field
        if any(field == u or field.startswith((u + ".", u + "[")) for u in self.unreadable):
            return
        self.checker.errors.append(error)
        if unreadable:
            self.unreadable.add(field)

    def has(self, name: str) -> bool:
        return name in self.body

    def _gather(self, name: str, read: Callable[[], T]) -> T | None:
        """A `bodies.py` reader's value, or None with its 400 recorded against the field."""
        try:
            return read()
        except ApiError as exc:
            self.fail(name, exc.message.removeprefix(f"{name}: "))
            return None

    def text(self, name: str, *, required: bool = False, max_length: int = 200) -> str:
        """The text ('' when absent, null or bad)."""
        value = self._gather(
            name, lambda: text_field(self.body, name, required=required, max_length=max_length)
        )
        if value is None:
            return ""
        if not _storable(value):
            self.fail(name, "control characters are not allowed")
            return ""
        return value

    def number(self, name: str) -> float | None:
        """A JSON number (None when absent, null or bad; the caller checks its range)."""
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(name, "expected a number")
            return None
        return float(value)

    def whole(self, name: str) -> int | None:
        """A JSON whole number of any sign (None when absent, null or bad; the caller checks its range)."""
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, "expected a whole number")
            return None
        return int(value)

    def array(self, name: str) -> list[Any]:
        value = self.body.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > MAX_ENTRIES:
            self.fail(name, f"expected a list of at most {MAX_ENTRIES} entries")
            return []
        return value

    def entries(self, name: str, allowed: Collection[str]) -> list[FieldReader]:
        """A list of objects, one reader per entry; an entry that is no object reads as empty
        (so that positions in later errors still match the body) with its own error."""
        readers: list[FieldReader] = []
        for n, entry in enumerate(self.array(name)):
            at = f"{self.prefix}{name}[{n}]"
            if not isinstance(entry, dict):
                self._record(FieldError(at, "expected an object"), unreadable=True)
                entry = {}
            readers.append(
                FieldReader(entry, allowed, checker=self.checker, prefix=at + ".", unreadable=self.unreadable)
            )
        return readers

    def entry_text(self, name: str, value: Any, position: int) -> str | None:
        """One text entry of a list (None after recording why it is not one)."""
        if not isinstance(value, str) or len(value) > 200 or not _storable(value):
            self.fail(f"{name}[{position}]", "expected text of at most 200 characters")
            return None
        return value

    def merge(self, exc: InvalidInput) -> None:
        """Add the domain's complaints (but not about unreadable fields)."""
        for error in exc.errors:
            self._record(error, unreadable=False)

    def check(self, build: Callable[[], T]) -> T | None:
        """`build()`'s value, or None with its InvalidInput merged."""
        try:
            return build()
        except InvalidInput as exc:
            self.merge(exc)
            return None

    def done(self) -> None:
        """The 400 naming every bad field, if there is one."""
        try:
            self.checker.done()
        except InvalidInput as exc:
            raise invalid(exc) from None


def renamed(exc: InvalidInput, names: Mapping[str, str]) -> InvalidInput:
    """The same complaints with the domain's field names as the API spells them (lat → base_lat)."""
    return InvalidInput([FieldError(names.get(e.field, e.field), e.reason) for e in exc.errors])


def path_id(request: web.Request, what: str) -> int:
    key = as_id(request.match_info["id"], BIGSERIAL_MAX)
    if key is None:
        raise not_found(what)
    return key


CardJson = Callable[[Conn, Runtime, int], Awaitable[dict[str, Any] | None]]


async def change_status(
    request: web.Request, subject: Subject, action: Literal["suspend", "reactivate"], card: CardJson
) -> web.Response:
    """`POST …/{id}/suspend` and `…/reactivate`: a supervisor's call (an inactive one revived: an
    administrator's); the card as it is afterwards."""
    user = current_user(request, Role.SUPERVISOR)
    runtime = request.app[RUNTIME]
    subject_id = path_id(request, subject.value)
    reader = FieldReader(await json_object(request), {"reason"})
    reason = reader.text("reason", required=action == "suspend", max_length=500)
    reader.done()
    try:
        async with runtime.pool.acquire() as conn:
            if action == "suspend":
                event = await suspend(conn, subject, subject_id, actor=actor_of(user), reason=reason)
            else:
                event = await reactivate(
                    conn, subject, subject_id, actor=actor_of(user), reason=reason, admin=user.may(Role.ADMIN)
                )
            body = await card(conn, runtime, subject_id)
    except SubjectNotFound:
        raise not_found(subject.value) from None
    except StatusConflict as exc:
        raise ApiError(409, "conflict", str(exc), state=exc.current) from None
    except AdminOnly as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    except InvalidInput as exc:
        raise invalid(exc) from None
    await runtime.bus.publish(event)
    return ok(body)


INVALID_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field", "fields"],
            "properties": {
                "code": {"type": "string", "const": "invalid"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the first bad field"},
                "fields": {
                    "type": "array",
                    "description": "every bad field and why; nested ones by position, e.g. members[1].phone",
                    "items": {
                        "type": "object",
                        "required": ["field", "reason"],
                        "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                    },
                },
            },
        }
    },
}


def invalid_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InvalidRecord"}}},
    }


def json_body(schema: str, description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


ID_PARAMETER: dict[str, Any] = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def status_operation(subject: Subject, action: Literal["suspend", "reactivate"], card: str) -> dict[str, Any]:
    what = subject.value
    summary = (
        f"Suspend a {what}: no more work goes to it until it is reactivated (a reason is required)"
        if action == "suspend"
        else f"Reactivate a suspended {what} (an inactive one: administrators only)"
    )
    return {
        "post": {
            "summary": summary,
            "operationId": f"{action}{what.capitalize()}",
            "tags": [f"{what}s"],
            "parameters": [ID_PARAMETER],
            "requestBody": {
                "required": action == "suspend",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StatusChange"}}},
            },
            "responses": {
                "200": {
                    "description": f"the {what} as it is now",
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{card}"}}},
                },
                "400": invalid_response("no reason given, or an unknown field"),
                "401": error_response("no or an invalid bearer token"),
                "403": error_response("needs the supervisor role (reviving an inactive one: administrator)"),
                "404": error_response(f"no such {what}"),
                "409": error_response(
                    f"the {what}'s status does not allow it; `error.state` is the current status"
                ),
            },
        }
    }


STATUS_CHANGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "reason": {
            "type": "string",
            "maxLength": 500,
            "description": "why; required to suspend, written on the event log",
        }
    },
}
