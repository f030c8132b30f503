"""The DC-09 receiver over real TCP and UDP sockets against a real PostgreSQL.

What is checked is what a unit sees: an ACK only once its alarm is committed, silence
for a bad CRC, NAK for a stale timestamp, DUH for what we do not take, one stored
alarm however often a unit resends, and a receiver that outlives hostile input and a
database that goes away (the units retry; nothing is lost when it comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from dispatch.alert_desk import AlertDesk
from dispatch.config import Config
from dispatch.database import connect, create_pool
from dispatch.migrate import apply_migrations
from dispatch.pgserver import EmbeddedPostgres
from dispatch.runtime import Runtime
from telephony.alarms import dc09
from telephony.alarms.dc09_server import Dc09Server
from tests.alarm_helpers import alarm_config, handled, sia, unit

KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")


@contextlib.asynccontextmanager
async def receiver(config: Config, pool: asyncpg.Pool, **environ: str) -> AsyncIterator[Dc09Server]:
    runtime = Runtime(config=alarm_config(config), pool=pool)
    server = Dc09Server(runtime, AlertDesk(runtime), environ=environ)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def server(config: Config, pool: asyncpg.Pool) -> AsyncIterator[Dc09Server]:
    async with receiver(config, pool, CARELINE_DC09_KEY_E0C0DE=KEY.hex()) as s:
        yield s


class Unit:
    """A DC-09 transmitter over TCP: sends a frame, reads the answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Unit:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, frame: bytes, wait: float = 10) -> bytes:
        self.writer.write(frame)
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.readuntil(b"\r"), wait)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def answer_of(frame: bytes) -> str:
    return frame[frame.index(b'"') + 1 : frame.index(b'"', frame.index(b'"') + 1)].decode()


async def test_tcp_answers_ack_nak_duh_and_nothing_for_a_bad_crc(
    server: Dc09Server, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await unit(conn, "A0A0A0")
    assert server.port
    tx = await Unit.connect(server.port)
    now = dt.datetime.now(dt.UTC)
    good = sia("A0A0A0", 11, at=now)
    damaged = good.replace(b"PA001", b"PA002")
    # The damaged frame gets no answer: the next thing on the wire is the ACK of the good one.
    tx.writer.write(damaged)
    ack = await tx.send(good)
    assert (
        ack
        == dc09.ack(dc09.decode_frame(good, key_for=lambda _: None, now=now).header, now)[: len(ack) - 21]
        + ack[-21:]
    )
    assert answer_of(ack) == "ACK"
    assert b"0011R1L1#A0A0A0[]" in ack
    assert await pool.fetchval("SELECT count(*) FROM alarms") == 1

    stale = sia("A0A0A0", 12, at=now - dt.timedelta(seconds=120))
    nak = await tx.send(stale)
    assert nak.startswith(b"\n")
    assert b'"NAK"0000R0L0A0[]_' in nak
    duh = await tx.send(dc09.encode_message("SIA-DCX", 13, "A0A0A0", "#A0A0A0|NPA1", receiver="1", line="1"))
    assert b'"DUH"0013R1L1#A0A0A0[]' in duh
    unreadable = await tx.send(
        dc09.encode_message("SIA-DCS", 14, "A0A0A0", "garbage", receiver="1", line="1")
    )
    assert answer_of(unreadable) == "NAK"
    await tx.close()
    assert await pool.fetchval("SELECT count(*) FROM alarms") == 1


async def test_encrypted_frame_gets_an_encrypted_ack(server: Dc09Server, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await unit(conn, "E0C0DE")
    assert server.port
    tx = await Unit.connect(server.port)
    now = dt.datetime.now(dt.UTC)
    answer = await tx.send(sia("E0C0DE", 21, "MA", at=now, key=KEY))
    await tx.close()
    assert answer_of(answer) == "*ACK"
    decoded = dc09.decode_frame(
        answer, key_for={"E0C0DE": KEY}.get, now=now, window=(60, 60), tokens=dc09.ANSWER_TOKENS
    )
    assert (decoded.header.sequence, decoded.header.account) == ("0021", "E0C0DE")
    await handled(server.runtime, server.desk)
    assert await pool.fetchval("SELECT kind FROM alerts") == "medical"


async def test_resend_after_a_lost_ack_stores_nothing_new(server: Dc09Server, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await unit(conn, "B1B1B1")
    assert server.port
    frame = sia("B1B1B1", 31)
    first = await Unit.connect(server.port)
    await first.send(frame)
    await first.close()  # the ACK "was lost": the unit reconnects and sends the same frame
    second = await Unit.connect(server.port)
    again = await second.send(frame)
    await second.close()
    assert answer_of(again) == "ACK"
    await handled(server.runtime, server.desk)
    assert await pool.fetchval("SELECT count(*) FROM alarms") == 1
    assert await pool.fetchval("SELECT triggers FROM alerts") == 1


async def test_udp_acks_after_commit_and_ignores_a_bad_crc(server: Dc09Server, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await unit(conn, "C2C2C2")
    assert server.port
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            answers.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", server.port))
    try:
        frame = sia("C2C2C2", 41, "FA")
        transport.sendto(frame.replace(b"FA001", b"FA009"))
        transport.sendto(frame)
        answer = await asyncio.wait_for(answers.get(), 10)
        assert b'"ACK"0041R1L1#C2C2C2[]' in answer
        assert await pool.fetchval("SELECT count(*) FROM alarms") == 1
        transport.sendto(frame)
        assert b'"ACK"0041' in await asyncio.wait_for(answers.get(), 10)
        assert answers.empty()
    finally:
        transport.close()
    assert await pool.fetchval("SELECT count(*) FROM alarms") == 1


async def test_hostile_streams_store_nothing_and_the_receiver_carries_on(
    server: Dc09Server, pool: asyncpg.Pool
) -> None:
    assert server.port
    rng = random.Random(12349)
    for payload in (
        bytes(rng.getrandbits(8) for _ in range(5000)),
        b"\n" + b"A" * (dc09.MAX_FRAME + 100),  # no CR within any frame's length
        b"\n0000\r\n\r\r\n" + b'"SIA-DCS"' * 10 + b"\r",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.write_eof()
        # The receiver answers nothing and closes the connection (EOF, or a reset for the flood).
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    async with pool.acquire() as conn:
        await unit(conn, "D3D3D3")
    tx = await Unit.connect(server.port)
    assert answer_of(await tx.send(sia("D3D3D3", 51))) == "ACK"
    await tx.close()
    assert await pool.fetchval("SELECT count(*) FROM alarms") == 1


async def test_burst_of_1000_alarms_from_100_units_each_stored_once_before_its_ack(
    server: Dc09Server, pool: asyncpg.Pool
) -> None:
    accounts = [f"{0xA00000 + i:06X}" for i in range(100)]
    async with pool.acquire() as conn:
        for account in accounts:
            await unit(conn, account)
    assert server.port
    port = server.port
    missing_at_ack: list[str] = []

    async def one_unit(account: str) -> None:
        tx = await Unit.connect(port)
        for seq in range(1, 11):
            code = "PA" if seq % 5 == 1 else "RP"
            answer = await tx.send(sia(account, seq, code), wait=60)
            assert answer_of(answer) == "ACK"
            key = f"{account}/1/1/{seq:04d}"
            stored = await pool.fetchval(
                "SELECT cardinality(alarm_ids) FROM alarm_receipts WHERE source = 'dc09' AND key = $1", key
            )
            if stored != 1:
                missing_at_ack.append(key)
        await tx.close()

    await asyncio.gather(*(one_unit(a) for a in accounts))
    assert missing_at_ack == []
    assert await pool.fetchval("SELECT count(*) FROM alarms") == 1000
    assert await pool.fetchval("SELECT count(DISTINCT (sender, code, received_at)) FROM alarms") == 1000
    # Two presses per unit, one open alert per resident: the second joined the first.
    await handled(server.runtime, server.desk)
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 100
    assert await pool.fetchval("SELECT sum(triggers) FROM alerts") == 200


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "own", settings={"fsync": "off"})
    await server.start()
    yield server
    await server.stop()


async def test_database_down_means_no_ack_and_the_retries_are_stored_when_it_returns(
    config: Config, own_server: EmbeddedPostgres
) -> None:
    dsn = own_server.dsn()
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
        for i in range(3):
            await unit(conn, f"F0000{i}")
    finally:
        await conn.close()
    config = dataclasses.replace(
        config, alarms=dataclasses.replace(config.alarms, intake_timeout_seconds=2.0)
    )
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        async with receiver(config, pool) as server:
            assert server.port
            port = server.port
            tx = await Unit.connect(port)
            assert answer_of(await tx.send(sia("F00000", 1))) == "ACK"
            await tx.close()
            await own_server.stop()
            frames = [sia(f"F0000{i}", 2) for i in range(3)]
            unanswered = 0
            for frame in frames:
                tx = await Unit.connect(port)
                try:
                    await tx.send(frame, wait=4)
                except TimeoutError:
                    unanswered += 1
                await tx.close()
            assert unanswered == 3
            await own_server.start()

            async def retry_until_acked(frame: bytes) -> int:
                for attempt in range(1, 40):
                    tx = await Unit.connect(port)
                    try:
                        answer = await tx.send(frame, wait=4)
                    except TimeoutError:
                        answer = b""
                    finally:
                        await tx.close()
                    if answer and answer_of(answer) == "ACK":
                        return attempt
                    await asyncio.sleep(0.25)  # a unit's retry interval
                raise AssertionError("never acknowledged")

            await asyncio.gather(*(retry_until_acked(f) for f in frames))
            await asyncio.gather(*(retry_until_acked(f) for f in frames))  # and once more: no second row
    finally:
        await pool.close()
    check = await connect(dsn)
    try:
        assert await check.fetchval("SELECT count(*) FROM alarms") == 4
        assert await check.fetchval("SELECT count(*) FROM alarms WHERE sender = 'dc09:F00001'") == 1
    finally:
        await check.close()


async def test_stopping_with_units_connected_ends_their_connections_quietly(
    config: Config, pool: asyncpg.Pool
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        async with receiver(config, pool) as server:
            assert server.port is not None
            units = [await Unit.connect(server.port) for _ in range(3)]
            assert answer_of(await units[0].send(sia("5A0001", 1, "RP", "000"))) == "ACK"
        for _ in range(3):
            await asyncio.sleep(0)  # let the stream server's done-callbacks run
        assert reported == []
        for unit_ in units:
            assert await unit_.reader.read() == b""  # each connection was closed by the receiver
            await unit_.close()
    finally:
        loop.set_exception_handler(previous)
