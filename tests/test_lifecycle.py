"""The service as a process: healthy, 503 when the database goes, clean on SIGTERM.

These run `careline serve` for real (embedded PostgreSQL in a temp directory)
and look at what is left behind: no PostgreSQL process, no warnings about
pending tasks or unclosed connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from dispatch.config import Config
from dispatch.pgserver import EmbeddedPostgres
from dispatch.service import Service
from tests.helpers import free_port

CARELINE = [sys.executable, "-m", "dispatch.cli"]


def postgres_processes_for(pgdata: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmdline and str(pgdata) in cmdline:
            found.append(int(entry.name))
    return found


async def wait_healthy(url: str, proc: asyncio.subprocess.Process, seconds: float = 60) -> dict[str, object]:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(seconds * 10)):
            if proc.returncode is not None:
                raise AssertionError(f"careline exited early with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        body: dict[str, object] = await resp.json()
                        return body
            await asyncio.sleep(0.1)
    raise AssertionError("careline did not become healthy")


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A folder for a test's own PostgreSQL, outside pytest's basetemp: another pytest run on the
    machine makes `pytest-of-root` 0700 again, and the server's user could no longer reach it."""
    folder = Path(tempfile.mkdtemp(prefix="careline-lifecycle-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def serve_env(pg_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE_")}
    env.update(
        CARELINE_DATABASE_EMBEDDED_DIR=str(pg_dir / "pgdata"),
        CARELINE_SERVER_PORT=str(free_port()),
        CARELINE_ALARMS_DC09_PORT="0",
        CARELINE_LOGGING_LEVEL="INFO",
    )
    return env


async def start_serve(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CARELINE, "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def test_sigterm_stops_cleanly_and_leaves_no_postgres(serve_env: dict[str, str]) -> None:
    pgdata = Path(serve_env["CARELINE_DATABASE_EMBEDDED_DIR"])
    url = f"http://127.0.0.1:{serve_env['CARELINE_SERVER_PORT']}"
    proc = await start_serve(serve_env)
    body = await wait_healthy(url, proc)
    assert body["status"] == "ok"
    assert postgres_processes_for(pgdata), "the embedded server should be running"
    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    log = stderr.decode()
    assert proc.returncode == 0, log
    for bad in ("Traceback", "Task was destroyed", "Unclosed", "never awaited", "ResourceWarning"):
        assert bad not in log, log
    assert "embedded PostgreSQL stopped" in log
    assert postgres_processes_for(pgdata) == []
    assert not (pgdata / "postmaster.pid").exists()


async def test_killed_service_leaves_server_that_next_start_adopts(serve_env: dict[str, str]) -> None:
    pgdata = Path(serve_env["CARELINE_DATABASE_EMBEDDED_DIR"])
    url = f"http://127.0.0.1:{serve_env['CARELINE_SERVER_PORT']}"
    first = await start_serve(serve_env)
    await wait_healthy(url, first)
    first.kill()
    await first.communicate()
    assert postgres_processes_for(pgdata), "SIGKILL cannot stop the child server"
    second = await start_serve(serve_env)
    await wait_healthy(url, second)
    second.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(second.communicate(), timeout=60)
    assert second.returncode == 0, stderr.decode()
    assert "adopting the embedded PostgreSQL" in stderr.decode()
    assert postgres_processes_for(pgdata) == []


def test_bad_config_stops_with_one_clear_line(serve_env: dict[str, str]) -> None:
    env = {**serve_env, "CARELINE_SERVER_PORT": "abc"}
    result = subprocess.run([*CARELINE, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "careline: configuration error: server.port: expected an integer 0-65535, got 'abc'"
    )


@pytest.fixture
async def own_server(pg_dir: Path) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(pg_dir / "own", settings={"fsync": "off"})
    await server.start()
    yield server
    await server.stop()


async def test_healthz_is_503_while_the_database_is_down(
    config: Config, own_server: EmbeddedPostgres
) -> None:
    config = dataclasses.replace(config, database=dataclasses.replace(config.database, url=own_server.dsn()))
    service = Service(config)
    await service.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(service.url + "/healthz") as resp:
                assert resp.status == 200
            await own_server.stop()
            async with http.get(service.url + "/healthz") as resp:
                body = await resp.json()
                assert resp.status == 503
                assert body["status"] == "down"
                assert body["database"]["status"] == "down"
            await own_server.start()
            async with http.get(service.url + "/healthz") as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await service.stop()


async def test_metrics_are_prometheus_text(service: Service) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(service.url + "/healthz") as first:
            assert first.status == 200
        async with http.get(service.url + "/metrics") as resp:
            text = await resp.text()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert 'careline_http_requests_total{method="GET",route="/healthz",status="200"}' in text


async def test_one_shot_command_beside_serve_leaves_its_database_running(serve_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{serve_env['CARELINE_SERVER_PORT']}"
    proc = await start_serve(serve_env)
    try:
        await wait_healthy(url, proc)
        added = await asyncio.create_subprocess_exec(
            *CARELINE,
            "user",
            "add",
            "wangfang",
            "--role",
            "operator",
            env=serve_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(added.communicate(), timeout=60)
        assert added.returncode == 0, err.decode()
        token = out.decode().split("API token (shown once, keep it safe): ")[1].strip()
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/healthz") as resp:
                assert resp.status == 200
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(url + "/api/v1/residents", headers=headers) as resp:
                assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0
