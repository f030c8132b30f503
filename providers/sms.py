"""Sending one SMS: the `SmsSender` protocol, Twilio, and the development outbox.

A sender does one thing — hand a message to the network — and says how it
went in our terms: a `SendResult` with the provider's message id, a
`TransientSmsError` (try again later: timeouts, connection errors, HTTP 429
and 5xx) or a `PermanentSmsError` (do not try again: an invalid number, an
unsubscribed recipient, a bad account). Nothing outside this module sees a
Twilio exception. Queueing, retries and bookkeeping live in `providers.outbox`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from dispatch.config import Config, ConfigError, SmsConfig

log = logging.getLogger(__name__)

TWILIO_DEFAULT_API = "https://api.twilio.com"


@dataclass(frozen=True)
class SendResult:
    provider_sid: str


class TransientSmsError(Exception):
    """The message may go through if tried again later."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class PermanentSmsError(Exception):
    """The message will never go through as it is; `code` is the provider's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SmsSender(Protocol):
    # "twilio" or "outbox": shown by /healthz and GET /api/v1/sms
    backend: str

    async def send(self, to_e164: str, body: str, *, status_callback: str | None) -> SendResult: ...

    async def close(self) -> None: ...


class OutboxSender:
    """Development: the message is marked sent without leaving the machine.

    It stays in `sms_messages` for the console and GET /api/v1/sms to show;
    replies come in through POST /api/v1/sms/outbox/reply.
    """

    backend = "outbox"

    async def send(self, to_e164: str, body: str, *, status_callback: str | None) -> SendResult:
        return SendResult(provider_sid="OUTBOX" + uuid.uuid4().hex)

    async def close(self) -> None:
        return None


# twilio ships no type information, so its client class is Any to mypy
class _ApiBaseHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's own async HTTP client, sending every request to `api_base` instead of api.twilio.com
    (`sms.twilio_api_base`: the tests' local server, or a regional/edge endpoint)."""

    def __init__(self, api_base: str) -> None:
        super().__init__(pool_connections=True)
        self.api_base = urlsplit(api_base)

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the signature of the method overridden
        allow_redirects: bool = False,
    ) -> Response:
        if auth is not None:
            # aiohttp 3.14 deprecates the BasicAuth object the parent would build: send the header ourselves
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers = {**(headers or {}), "Authorization": f"Basic {credentials}"}
            auth = None
        parts = urlsplit(url)
        base_path = self.api_base.path.rstrip("/")
        url = urlunsplit(
            parts._replace(
                scheme=self.api_base.scheme, netloc=self.api_base.netloc, path=base_path + parts.path
            )
        )
        response: Response = await super().request(
            method, url, params, data, headers, auth, timeout, allow_redirects
        )
        return response


# Twilio error codes that will not change on a retry of the same request
# (https://www.twilio.com/docs/api/errors): any 4xx other than 429 is permanent too.
TRANSIENT_HTTP = {408, 429}


class TwilioSender:
    """Twilio's REST API through the official client, asynchronously.

    Credentials come from TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (via the
    config's environment-only keys). The sender is a Messaging Service when
    `sms.twilio_messaging_service_sid` is set, else the number `sms.twilio_from`.
    """

    backend = "twilio"

    def __init__(self, sms: SmsConfig) -> None:
        if not sms.twilio_enabled:
            raise ConfigError("sms: TwilioSender needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if not (sms.twilio_from or sms.twilio_messaging_service_sid):
            raise ConfigError(
                "sms.twilio_from: with Twilio credentials set, set sms.twilio_from (a Twilio number) "
                "or sms.twilio_messaging_service_sid"
            )
        self.sms = sms
        self.timeout = sms.send_timeout_seconds
        self._client: Client | None = None
        self._http: _ApiBaseHttpClient | None = None

    def _ensure_client(self) -> Client:
        # The HTTP client opens an aiohttp session, which belongs on the running loop: made at first use.
        if self._client is None:
            self._http = _ApiBaseHttpClient(self.sms.twilio_api_base)
            self._client = Client(
                self.sms.twilio_account_sid, self.sms.twilio_auth_token, http_client=self._http
            )
        return self._client

    async def send(self, to_e164: str, body: str, *, status_callback: str | None) -> SendResult:
        client = self._ensure_client()
        sender: dict[str, Any] = (
            {"messaging_service_sid": self.sms.twilio_messaging_service_sid}
            if self.sms.twilio_messaging_service_sid
            else {"from_": self.sms.twilio_from}
        )
        if status_callback:
            sender["status_callback"] = status_callback
        try:
            async with asyncio.timeout(self.timeout):
                message = await client.messages.create_async(to=to_e164, body=body, **sender)
        except TimeoutError:
            raise TransientSmsError(f"Twilio did not answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise TransientSmsError(f"cannot reach Twilio: {type(exc).__name__}") from None
        except (TwilioRestException, TwilioServiceException) as exc:
            # Twilio's message text can quote the number: keep only the status and the code.
            status = int(exc.status)
            code = str(exc.code) if exc.code is not None else str(status)
            if status in TRANSIENT_HTTP or status >= 500:
                raise TransientSmsError(f"Twilio answered HTTP {status}", code=code) from None
            raise PermanentSmsError(
                code, f"Twilio refused the message (HTTP {status}, code {code})"
            ) from None
        sid = message.sid
        if not sid:
            raise TransientSmsError("Twilio answered without a message SID")
        return SendResult(provider_sid=str(sid))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None


def make_sender(config: Config) -> SmsSender:
    """Twilio when both credentials are in the environment, else the outbox."""
    if config.sms.twilio_enabled:
        return TwilioSender(config.sms)
    return OutboxSender()
