"""The registry's write API as tests use it: the real service, one user per role, JSON in and out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from dispatch.service import Service
from dispatch.users import Role, create_user, issue_token
from tests.registry_seed import Geo, seed_catalogue, seed_geography


@dataclass(frozen=True)
class Desk:
    url: str
    geo: Geo
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    operator: str  # bearer tokens
    supervisor: str
    admin: str

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON body); every answer of the API must be JSON, errors included."""
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        async with self.http.request(
            method, self.url + path, json=body, params=params, headers=headers
        ) as resp:
            assert resp.content_type == "application/json", (resp.status, await resp.text())
            return resp.status, await resp.json()

    async def events(self, subject_type: str, subject_id: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT kind, actor, from_state, to_state, reason, data FROM events
               WHERE subject_type = $1 AND subject_id = $2 ORDER BY id""",
            subject_type,
            subject_id,
        )


async def open_desk(service: Service, http: aiohttp.ClientSession) -> Desk:
    """The demo floor's names (two districts, a few items) and an operator, a supervisor, an admin."""
    assert service.runtime is not None
    pool = service.runtime.pool
    async with pool.acquire() as conn:
        await seed_catalogue(conn)
        geo = await seed_geography(conn)
        tokens = {}
        for name, role in (("op", Role.OPERATOR), ("sup", Role.SUPERVISOR), ("boss", Role.ADMIN)):
            user = await create_user(conn, name, role)
            tokens[role] = await issue_token(conn, user.id)
    return Desk(
        url=service.url,
        geo=geo,
        pool=pool,
        http=http,
        operator=tokens[Role.OPERATOR],
        supervisor=tokens[Role.SUPERVISOR],
        admin=tokens[Role.ADMIN],
    )


def fields_of(body: Any) -> set[str]:
    """The fields a 400 names."""
    assert body["error"]["code"] == "invalid", body
    return {f["field"] for f in body["error"]["fields"]}
