"""Schemathesis over the OpenAPI document: whatever the schema allows, no request gets a 5xx.

The service runs as a real subprocess (`careline serve`) on a database of its
own holding a small demo floor; every operation in /api/openapi.json is called
with generated parameters and bodies, with a valid bearer token.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth

from dispatch.api.app import openapi_parts
from dispatch.api.openapi import document
from dispatch.service import api_modules
from tests.helpers import free_port, with_database


def assembled_document() -> dict[str, Any]:
    return document(*openapi_parts(api_modules()))


schema = schemathesis.openapi.from_dict(assembled_document())


@pytest.fixture(scope="module")
def live(pg_admin_dsn: str, template_dsn: str) -> Iterator[tuple[str, str]]:
    """(base URL, bearer token) of a real service on its own database with a small demo floor."""
    name = f"fuzz_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    template = urlsplit(template_dsn).path.lstrip("/")
    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE_")}
    env |= {
        "CARELINE_DATABASE_URL": with_database(pg_admin_dsn, name),
        "CARELINE_SERVER_PORT": str(port),
        "CARELINE_ALARMS_DC09_PORT": "0",
        "CARELINE_DEMO_RESIDENTS": "200",
        "CARELINE_DEMO_DEVICES": "50",
        "CARELINE_DEMO_PROVIDERS": "20",
        "CARELINE_DEMO_TEAMS": "4",
        "CARELINE_LOGGING_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "dispatch.cli"]
    subprocess.run([*cli, "demo-data"], env=env, check=True, capture_output=True, timeout=120)
    added = subprocess.run(
        [*cli, "user", "add", "fuzz", "--role", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    token = added.stdout.split("API token (shown once, keep it safe): ")[1].strip()
    proc = subprocess.Popen([*cli, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        yield url, token
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_gets_a_server_error(
    case: schemathesis.Case[Any], live: tuple[str, str]
) -> None:
    url, token = live
    case.call_and_validate(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error],
        excluded_checks=[ignored_auth],
    )
