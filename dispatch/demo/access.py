"""`careline serve --demo`: a floor to look at and the log-ins to look at it with.

The demo accounts get new random passwords at every start and the previous
demo API token is revoked, so a demo left running somewhere is not opened by
credentials someone copied last week. They are printed to stdout, once, for
the person who started the service; they never go through `logging`, whose
output ends up in files and log shippers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from dispatch.config import ServerConfig
from dispatch.database import Conn
from dispatch.demo.floor import build_demo_floor_if_empty
from dispatch.runtime import Runtime
from dispatch.users import Role, ensure_user, issue_token

ADMIN = "demo-admin"
SUPERVISOR = "demo-supervisor"
OPERATOR = "demo-operator"
TOKEN_LABEL = "demo (careline serve --demo)"

_REVOKE_DEMO_TOKENS = """
    UPDATE api_tokens SET revoked_at = now()
    WHERE user_id = $1 AND label = $2 AND revoked_at IS NULL
"""


@dataclass(frozen=True)
class DemoAccess:
    console_url: str
    admin_password: str
    supervisor_password: str
    operator_password: str
    api_token: str

    def describe(self) -> str:
        rule = "=" * 72
        return "\n".join(
            (
                rule,
                "Careline 12349 demo / 演示环境 — these log-ins change at every start / 每次启动重新生成",
                f"  console 控制台: {self.console_url}/console/",
                f"  API 接口说明:  {self.console_url}/api/openapi.json",
                f"  health 状态:   {self.console_url}/healthz",
                f"  {ADMIN:<15} (admin 管理员)      password 密码: {self.admin_password}",
                f"  {SUPERVISOR:<15} (supervisor 班长)  password 密码: {self.supervisor_password}",
                f"  {OPERATOR:<15} (operator 话务员)   password 密码: {self.operator_password}",
                f"  API token for {ADMIN} / API 令牌: {self.api_token}",
                "  try it / 试一试:",
                f'    curl -H "Authorization: Bearer {self.api_token}" {self.console_url}/api/v1/residents',
                rule,
            )
        )


async def ensure_demo_access(conn: Conn, console_url: str) -> DemoAccess:
    admin_password = secrets.token_urlsafe(12)
    supervisor_password = secrets.token_urlsafe(12)
    operator_password = secrets.token_urlsafe(12)
    admin = await ensure_user(conn, ADMIN, Role.ADMIN, display_name="演示管理员", password=admin_password)
    await ensure_user(
        conn, SUPERVISOR, Role.SUPERVISOR, display_name="演示班长", password=supervisor_password
    )
    await ensure_user(conn, OPERATOR, Role.OPERATOR, display_name="演示话务员", password=operator_password)
    await conn.execute(_REVOKE_DEMO_TOKENS, admin.id, TOKEN_LABEL)
    token = await issue_token(conn, admin.id, label=TOKEN_LABEL)
    return DemoAccess(console_url.rstrip("/"), admin_password, supervisor_password, operator_password, token)


def local_url(server: ServerConfig) -> str:
    """Where a browser on this machine reaches `serve`: the address it listens on, so a port set
    with CARELINE_SERVER_PORT is the one printed. `public_url` is what SMS links show to others;
    it is the answer only when the port is chosen by the system (0)."""
    if server.port == 0:
        return server.public_url
    host = "127.0.0.1" if server.host in ("", "0.0.0.0") else "[::1]" if server.host == "::" else server.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{server.port}"


async def prepare_demo_floor(runtime: Runtime) -> None:
    """Build the demo floor on first start, then (re)issue the demo log-ins and print them."""
    summary = await build_demo_floor_if_empty(runtime)
    async with runtime.pool.acquire() as conn, conn.transaction():
        access = await ensure_demo_access(conn, local_url(runtime.config.server))
    if summary is not None:
        print(summary.describe())
    else:
        print("demo floor kept from an earlier start / 沿用已有演示数据")
    print(access.describe(), flush=True)
