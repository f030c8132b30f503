"""Signed job-page links: `/j/<token>` opens one job, for one party, until it expires.

The token is short because it travels in an SMS (every character counts
against the two-segment budget of an offer): the job id, the party and the
expiry as unsigned varints, then 64 bits of HMAC-SHA256 under the runtime
secret, in URL-safe base64 without padding — about 22 characters. Forging
one means guessing 64 bits against the web server, one request at a time;
a token opens nothing but its own job.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import math
from dataclasses import dataclass

from dispatch.runtime import Runtime
from providers.jobs import Job, PartyType

MAC_BYTES = 8
_DOMAIN = b"careline/job-link/v1:"
# Expiry is kept in minutes from this instant: three bytes until 2028, four until 2055.
_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


_PARTY_BIT = {PartyType.TEAM: 0, PartyType.PROVIDER: 1}


class TokenError(ValueError):
    """A job-page token that is malformed, forged or expired."""


@dataclass(frozen=True)
class JobToken:
    job_id: int
    party_type: PartyType
    party_id: int
    expires_at: dt.datetime


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varints(data: bytes, count: int) -> list[int]:
    values: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise TokenError("malformed token")
        if not byte & 0x80:
            values.append(value)
            value = shift = 0
    if shift or len(values) != count:
        raise TokenError("malformed token")
    return values


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + payload, hashlib.sha256).digest()[:MAC_BYTES]


def make_token(
    secret: bytes, *, job_id: int, party_type: PartyType, party_id: int, expires_at: dt.datetime
) -> str:
    minutes = max(0, math.ceil((expires_at - _EPOCH).total_seconds() / 60))
    payload = _varint(job_id) + _varint(party_id * 2 + _PARTY_BIT[party_type]) + _varint(minutes)
    raw = payload + _mac(secret, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_token(secret: bytes, token: str, *, now: dt.datetime) -> JobToken:
    """The job and party a token names; TokenError when it is not ours or has expired."""
    if not 8 <= len(token) <= 64 or not token.isascii():
        raise TokenError("malformed token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        # one spelling per token: the unused low bits of the last character must be zero
        raise TokenError("malformed token")
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if len(payload) < 3 or not hmac.compare_digest(mac, _mac(secret, payload)):
        raise TokenError("the token is not valid")
    job_id, party, minutes = _read_varints(payload, 3)
    expires_at = _EPOCH + dt.timedelta(minutes=minutes)
    if now >= expires_at:
        raise TokenError("the link has expired")
    party_type = PartyType.PROVIDER if party & 1 else PartyType.TEAM
    return JobToken(job_id=job_id, party_type=party_type, party_id=party >> 1, expires_at=expires_at)


def link_expiry(runtime: Runtime, job: Job) -> dt.datetime:
    """A link works until the job's deadline plus `sms.job_link_grace_hours` (to look back at it)."""
    return job.expires_at + dt.timedelta(hours=runtime.config.sms.job_link_grace_hours)


def job_token(runtime: Runtime, job: Job) -> str:
    return make_token(
        runtime.secret,
        job_id=job.id,
        party_type=job.party_type,
        party_id=job.party_id,
        expires_at=link_expiry(runtime, job),
    )


def job_link(runtime: Runtime, job: Job) -> str:
    """The absolute URL of the job's page for its party, for an SMS."""
    return f"{runtime.config.server.public_url}/j/{job_token(runtime, job)}"
