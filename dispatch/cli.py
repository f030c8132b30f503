"""The `careline` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg

from dispatch.components import Database
from dispatch.config import Config, ConfigError, load_config

# Imported here, not inside the coroutines: an import (openpyxl) inside a running loop
# blocks it for a fifth of a second.
from dispatch.demo import DemoFloorError, build_demo_floor, prepare_demo_floor
from dispatch.imports import ImportFileError, import_file
from dispatch.logs import setup_logging
from dispatch.runtime import Runtime
from dispatch.service import Service
from dispatch.settlement import BadMonth, parse_month, run_settlement
from dispatch.users import Role, UserError, create_user, issue_token
from telephony.alarms.simulator import SIA_BY_KIND

log = logging.getLogger("careline")


class CommandError(Exception):
    """A command cannot do what was asked; the message is shown to the user as it is."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careline", description="Careline 12349 hotline platform")
    parser.add_argument("--config", type=Path, default=None, help="configuration file (default: config.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service until SIGTERM/SIGINT")
    serve.add_argument(
        "--demo", action="store_true", help="load the Hohhot demo floor (once) and print demo log-ins"
    )

    sub.add_parser("migrate", help="apply pending database migrations and exit")

    demo = sub.add_parser("demo-data", help="build the Hohhot demo floor in the database")
    demo.add_argument("--seed", type=int, default=None, help="random seed (default: demo.seed)")
    demo.add_argument(
        "--replace", action="store_true", help="delete the registry (residents, providers, ...) first"
    )

    imp = sub.add_parser("import", help="import residents or providers from .xlsx or .csv")
    imp.add_argument("kind", choices=["residents", "providers"])
    imp.add_argument("file", type=Path)
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")

    report = sub.add_parser("report", help="reports")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    settlement = report_sub.add_parser(
        "settlement", help="the month's settlement workbook (.xlsx): confirmed and settled orders"
    )
    settlement.add_argument("--month", required=True, help="YYYY-MM, the Asia/Shanghai month of service")
    settlement.add_argument("--out", required=True, type=Path, help="the .xlsx file to write")
    settlement.add_argument(
        "--settle", action="store_true", help="also mark the month's confirmed orders settled (idempotent)"
    )
    settlement.add_argument("--ref", default=None, help="settlement reference (default JS<YYYYMM>)")
    settlement.add_argument("--no-progress", action="store_true", help="no progress bar")

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user and print an API token once")
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--display-name", default="")
    add.add_argument(
        "--password",
        default=None,
        help="console password (omit for an API-only user); prefer --password-stdin",
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    integration = sub.add_parser("integration", help="device-cloud integrations (HMAC-signed alarm posts)")
    integration_sub = integration.add_subparsers(dest="integration_command", required=True)
    integration_add = integration_sub.add_parser("add", help="create one; prints its key and secret once")
    integration_add.add_argument("name")

    simulate = sub.add_parser("simulate", help="drive a running instance through its real protocols")
    simulate_sub = simulate.add_subparsers(dest="simulate_command", required=True)
    alarms = simulate_sub.add_parser("alarms", help="a simulator of alarm units and device clouds")
    alarms.add_argument("--transport", choices=["tcp", "udp", "http"], default="tcp")
    alarms.add_argument("--device", action="append", default=[], help="DC-09 account, or cloud id for http")
    alarms.add_argument("--devices", type=int, default=100, help="without --device: this many demo devices")
    alarms.add_argument("--kind", default="sos", choices=sorted(SIA_BY_KIND))
    alarms.add_argument("--count", type=int, default=1)
    alarms.add_argument("--rate", type=float, default=0.0, help="alarms per second (0: as fast as answered)")
    alarms.add_argument("--storm", action="store_true", help="every device reports mains restore at once")
    alarms.add_argument(
        "--key", default="", help="integration key for http (secret: CARELINE_INTEGRATION_SECRET)"
    )
    pbx = simulate_sub.add_parser(
        "pbx", help="a stand-in Asterisk: plays recorded or made-up calls to a Careline that connects"
    )
    pbx.add_argument("--host", default="127.0.0.1")
    pbx.add_argument("--port", type=int, default=5038)
    pbx.add_argument(
        "--username", default="careline", help="the login it accepts (secret: CARELINE_AMI_SECRET)"
    )
    pbx.add_argument(
        "--replay", action="append", default=[], type=Path, help="a recording to play (PATH without .ami)"
    )
    pbx.add_argument("--calls", type=int, default=0, help="made-up calls to play (0: for ever)")
    pbx.add_argument("--rate", type=float, default=6.0, help="made-up calls starting a minute")
    pbx.add_argument(
        "--speed", type=float, default=1.0, help="1: real pace; 10: ten times faster; 0: all at once"
    )
    pbx.add_argument("--numbers", type=int, default=500, help="demo residents' phones to call from")
    return parser


@contextlib.asynccontextmanager
async def _database(config: Config) -> AsyncIterator[Runtime]:
    """The database component alone (embedded server, migrations, pool) for one-shot commands."""
    database = Database(config, stop_adopted_server=False)
    await database.start()
    try:
        yield Runtime(config=config, pool=database.pool)
    finally:
        await database.stop()


async def _serve(config: Config, demo: bool) -> None:
    after_database: Callable[[Runtime], Awaitable[None]] | None = None
    if demo:
        after_database = prepare_demo_floor
    await Service(config, after_database=after_database).run_until_signalled()


async def _migrate(config: Config) -> None:
    async with _database(config):
        print("migrations are up to date")


async def _demo_data(config: Config, seed: int | None, replace: bool) -> None:
    async with _database(config) as runtime:
        try:
            summary = await build_demo_floor(
                runtime, seed=config.demo.seed if seed is None else seed, replace=replace
            )
        except DemoFloorError as exc:
            raise CommandError(str(exc)) from None
        print(summary.describe())


async def _import(config: Config, kind: str, path: Path, progress: bool) -> int:
    async with _database(config) as runtime:
        try:
            report = await import_file(runtime, kind, path, progress=progress)
        except ImportFileError as exc:
            raise CommandError(str(exc)) from None
    print(report.describe())
    return 0 if not report.errors else 1


async def _report_settlement(config: Config, args: argparse.Namespace) -> None:
    try:
        month = parse_month(args.month)
    except BadMonth as exc:
        raise CommandError(f"--month: {exc}") from None
    if args.ref is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", args.ref):
        raise CommandError("--ref: letters, digits, - and _ only, at most 40")
    async with _database(config) as runtime:
        report = await run_settlement(
            runtime, month, args.out, settle=args.settle, ref=args.ref, progress=not args.no_progress
        )
    print(report.describe())


async def _user_add(config: Config, args: argparse.Namespace) -> None:
    password = args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    async with _database(config) as runtime, runtime.pool.acquire() as conn, conn.transaction():
        try:
            user = await create_user(
                conn, args.name, Role(args.role), display_name=args.display_name, password=password or None
            )
        except UserError as exc:
            raise CommandError(str(exc)) from None
        token = await issue_token(conn, user.id, label="created by careline user add")
    print(f"user {user.username} ({user.role.value}) created")
    print(f"API token (shown once, keep it safe): {token}")


async def _integration_add(config: Config, name: str) -> None:
    from telephony.alarms.integrations import IntegrationError, add_integration

    async with _database(config) as runtime, runtime.pool.acquire() as conn:
        try:
            integration, secret = await add_integration(conn, name, config.security.secret_key)
        except IntegrationError as exc:
            raise CommandError(str(exc)) from None
    print(f"integration {integration.name} created")
    print(f"key: {integration.key}")
    print(f"secret (shown once, keep it safe): {secret}")


async def _simulate_alarms(config: Config, args: argparse.Namespace) -> None:
    from telephony.alarms.simulator import Plan, demo_devices, simulate

    secret = os.environ.get("CARELINE_INTEGRATION_SECRET", "")
    if args.transport == "http" and not (args.key and secret):
        raise CommandError("http needs --key and the secret in CARELINE_INTEGRATION_SECRET")
    devices = list(args.device)
    if not devices:
        async with _database(config) as runtime, runtime.pool.acquire() as conn:
            devices = await demo_devices(conn, args.transport, args.devices)
    plan = Plan(
        transport=args.transport,
        kind=args.kind,
        count=args.count,
        rate=args.rate,
        storm=args.storm,
        host=config.alarms.dc09_host,
        port=config.alarms.dc09_port,
        url=f"http://{config.server.host}:{config.server.port}",
        key=args.key,
        secret=secret,
    )
    print(f"simulating {plan.transport} alarms from {len(devices)} device(s)")
    try:
        report = await simulate(plan, devices)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(report.describe())


async def _simulate_pbx(config: Config, args: argparse.Namespace) -> None:
    from telephony.sim_calls import SAMPLE_NUMBERS, demo_numbers
    from telephony.simulator import PbxOptions, run_pbx

    numbers: list[str] = []
    if not args.replay:
        try:
            async with _database(config) as runtime, runtime.pool.acquire() as conn:
                numbers = await demo_numbers(conn, runtime.phones, args.numbers)
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"no database ({type(exc).__name__}): calls come from sample numbers")
        numbers = numbers or list(SAMPLE_NUMBERS)
    options = PbxOptions(
        host=args.host,
        port=args.port,
        username=args.username,
        secret=os.environ.get("CARELINE_AMI_SECRET", "careline"),
        recordings=tuple(args.replay),
        calls=args.calls,
        rate_per_minute=args.rate,
        speed=args.speed or None,
    )
    await run_pbx(options, numbers)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"careline: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.logging.level, config.logging.format)
    try:
        match args.command:
            case "serve":
                asyncio.run(_serve(config, args.demo))
            case "migrate":
                asyncio.run(_migrate(config))
            case "demo-data":
                asyncio.run(_demo_data(config, args.seed, args.replace))
            case "import":
                return asyncio.run(_import(config, args.kind, args.file, not args.no_progress))
            case "report":
                asyncio.run(_report_settlement(config, args))
            case "user":
                asyncio.run(_user_add(config, args))
            case "integration":
                asyncio.run(_integration_add(config, args.name))
            case "simulate" if args.simulate_command == "pbx":
                asyncio.run(_simulate_pbx(config, args))
            case "simulate":
                asyncio.run(_simulate_alarms(config, args))
    except CommandError as exc:
        print(f"careline: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"careline: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
