"""Suspending and reactivating providers and emergency teams, each change an event row.

Work goes only to status `active`: provider matching and team choice
(`dispatch/team_choice.py`) read `status = 'active'`, so a suspension takes
effect with the next offer or dispatch. What is already under way is left
alone: an operator decides about a job in progress, not a status flag.

- suspend: `active` → `suspended`; a reason is required (it is the first
  thing the next supervisor asks).
- reactivate: `suspended` → `active`. A provider or team marked `inactive`
  (停用/注销: deregistered, set by an administrator or an import) may come back
  too, but only by an administrator's hand.

Any other starting state is a `StatusConflict` naming the current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dispatch.database import Conn
from dispatch.events import DomainEvent, append_event
from dispatch.validation import InvalidInput, clean


class Subject(StrEnum):
    PROVIDER = "provider"
    TEAM = "team"


@dataclass(frozen=True)
class _Table:
    name: str
    # providers record when they last changed; emergency teams have no such column
    touch: str


_TABLES = {
    Subject.PROVIDER: _Table("providers", ", updated_at = now()"),
    Subject.TEAM: _Table("emergency_teams", ""),
}

ACTIVE, SUSPENDED, INACTIVE = "active", "suspended", "inactive"


class SubjectNotFound(LookupError):
    """No provider or team with that id."""


class StatusConflict(Exception):
    """The move is not allowed from the current status."""

    def __init__(self, subject: Subject, current: str, wanted: str) -> None:
        super().__init__(f"this {subject.value} is {current}; it cannot be made {wanted}")
        self.current = current


class AdminOnly(PermissionError):
    """The move needs an administrator."""


async def _move(
    conn: Conn,
    subject: Subject,
    subject_id: int,
    *,
    allowed_from: tuple[str, ...],
    to: str,
    kind: str,
    actor: str,
    reason: str,
    admin: bool,
) -> DomainEvent:
    table = _TABLES[subject]
    async with conn.transaction():
        # The row lock makes the check and the update one step: of two racing suspends one wins,
        # the other sees `suspended` and gets a conflict.
        current: str | None = await conn.fetchval(
            f"SELECT status FROM {table.name} WHERE id = $1 FOR UPDATE", subject_id
        )
        if current is None:
            raise SubjectNotFound(f"no {subject.value} {subject_id}")
        if current not in allowed_from:
            raise StatusConflict(subject, current, to)
        if current == INACTIVE and not admin:
            raise AdminOnly(
                f"this {subject.value} is inactive (deregistered); an administrator may revive it"
            )
        await conn.execute(f"UPDATE {table.name} SET status = $2{table.touch} WHERE id = $1", subject_id, to)
        return await append_event(
            conn,
            subject_type=subject.value,
            subject_id=subject_id,
            kind=f"{subject.value}.{kind}",
            actor=actor,
            from_state=current,
            to_state=to,
            reason=reason,
        )


async def suspend(conn: Conn, subject: Subject, subject_id: int, *, actor: str, reason: str) -> DomainEvent:
    """`active` → `suspended`, with the reason on the event; the caller publishes the event after commit."""
    if not clean(reason):
        raise InvalidInput.one("reason", "say why it is suspended")
    return await _move(
        conn,
        subject,
        subject_id,
        allowed_from=(ACTIVE,),
        to=SUSPENDED,
        kind="suspended",
        actor=actor,
        reason=clean(reason),
        admin=False,
    )


async def reactivate(
    conn: Conn, subject: Subject, subject_id: int, *, actor: str, reason: str = "", admin: bool = False
) -> DomainEvent:
    """`suspended` (or, for an administrator, `inactive`) → `active`."""
    return await _move(
        conn,
        subject,
        subject_id,
        allowed_from=(SUSPENDED, INACTIVE),
        to=ACTIVE,
        kind="reactivated",
        actor=actor,
        reason=clean(reason),
        admin=admin,
    )
