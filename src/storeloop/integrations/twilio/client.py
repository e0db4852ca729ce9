"""Twilio Programmable Messaging adapter: ``TwilioClient`` sends SMS through the Messages API.

Pure Python (no Django). One ``KeepAliveClient`` per client (``integrations.keepalive``: a lean
HTTP/1.1 pool on ``http.client`` raising httpx's exceptions; httpx's own client costs too much CPU per
send, ADR 8); HTTP Basic auth with the Account SID and auth token; form-encoded POSTs; JSON answers.

"Never twice" with Twilio:

- Twilio's Messages API takes **no idempotency key**. ``I-Twilio-Idempotency-Token`` is a header
  Twilio *sends* on its webhooks so receivers can drop Twilio's own retries; neither the Message
  resource reference nor the API spec lists a client request header, so we send none (an unknown
  header would be silently ignored and only suggest a guarantee that does not exist).
- So a send is retried inside the client only when Twilio surely did not act on it: a 429 (Twilio
  documents that a 429 request "is never processed and is always safe to retry") or a connection
  that was never established. A timeout after the request went out, a dropped connection, or a 5xx
  may hide an accepted message: the client raises ``TwilioTransientError(maybe_sent=True)`` at once
  and the dispatcher never sends it again: the message is recorded ``unknown`` until a status
  callback carrying our key settles it, or ``messaging.settlement`` does once the send is surely
  over: ``find_messages`` lists what Twilio took for the number (sent if there, queued again if not).
- ``idempotency_key`` is therefore carried where Twilio echoes it back: as a query parameter of the
  ``StatusCallback`` URL (``?sl_key=...``; Twilio signs the full URL, query included). Every status
  callback of that message names the dispatch that produced it, even when the create answer was lost.
- Reads (``get_message``, ``find_messages``, ``test_connection``) are retried on any transient error.

Every attempt first calls ``limiter.acquire()`` (shared by every client of one Twilio account: the
REST concurrency limit is per account); a 429 calls ``limiter.penalize(wait)`` so all users back off.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from storeloop.core.ports import RateLimiter
from storeloop.integrations.keepalive import KeepAliveClient, Response

from .errors import (
    TwilioAuthError,
    TwilioError,
    TwilioInvalidNumber,
    TwilioRateLimited,
    TwilioTransientError,
    TwilioValidationError,
    error_from_response,
)
from .models import AccountInfo, SentMessage
from .segments import MAX_BODY_CHARS, count_segments, validate_e164

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_KEY_PARAM", "DEFAULT_TIMEOUT", "TwilioClient", "callback_url_with_key"]

logger = logging.getLogger("storeloop.integrations.twilio")

DEFAULT_BASE_URL = "https://api.twilio.com"
DEFAULT_TIMEOUT = httpx.Timeout(15, connect=5)
DEFAULT_KEY_PARAM = "sl_key"
API_VERSION = "2010-04-01"
USER_AGENT = "Storeloop/0.1 (twilio-client)"

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_MESSAGE_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_SHORT_CODE = re.compile(r"\d{3,8}")
_ALPHANUMERIC = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")  # alphanumeric sender ID
_KEY = re.compile(r"[\x21-\x7e]{1,200}")


def callback_url_with_key(url: str, key: str, param: str = DEFAULT_KEY_PARAM) -> str:
    """``url`` with ``param=key`` set in its query string (replacing an existing value)."""
    head, query, tail = _callback_parts(url, param)
    return f"{head}?{query}{urlencode(((param, key),))}{tail}"


@functools.lru_cache(maxsize=64)
def _callback_parts(url: str, param: str) -> tuple[str, str, str]:
    """What ``urlunsplit`` writes before the query, the query without ``param`` (ending in "&"
    when not empty) and the "#fragment": a sender's callback URL is the same for every message."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != param])
    head = urlunsplit(parts._replace(query="", fragment=""))
    return head, f"{query}&" if query else "", f"#{parts.fragment}" if parts.fragment else ""


def key_from_callback_url(url: str, param: str = DEFAULT_KEY_PARAM) -> str | None:
    """The idempotency key a status callback URL carries (None when absent)."""
    for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if k == param and v:
            return v
    return None


def _check_sender(from_number: str) -> str:
    if _SHORT_CODE.fullmatch(from_number) or _ALPHANUMERIC.fullmatch(from_number):
        return from_number
    try:
        return validate_e164(from_number)
    except ValueError as exc:
        raise ValueError(f"from_number: {exc} Short codes and alphanumeric sender IDs are accepted too.") from None


class TwilioClient:
    """One Twilio account (Account SID + auth token) and one sender (Messaging Service or number).

    ``messaging_service_sid`` (``MG...``) is preferred: Twilio picks the sender from the service's
    pool and applies its opt-out and Geo settings; the message starts as ``accepted`` and
    ``num_segments`` stays 0 until a sender is chosen. Otherwise ``from_number`` (E.164, short
    code or alphanumeric sender ID) is used and the message starts as ``queued``.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        messaging_service_sid: str | None = None,
        from_number: str | None = None,
        status_callback: str | None = None,
        limiter: RateLimiter | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
        validate_numbers: bool = True,
        key_param: str = DEFAULT_KEY_PARAM,
    ) -> None:
        if not _ACCOUNT_SID.fullmatch(account_sid or ""):
            raise ValueError("account_sid must be 'AC' followed by 32 hexadecimal characters")
        if not auth_token:
            raise ValueError("a Twilio auth token is required")
        if messaging_service_sid is not None and not _SERVICE_SID.fullmatch(messaging_service_sid):
            raise ValueError("messaging_service_sid must be 'MG' followed by 32 hexadecimal characters")
        if messaging_service_sid is None and not from_number:
            raise ValueError("either messaging_service_sid or from_number is required")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.account_sid = account_sid
        self.messaging_service_sid = messaging_service_sid
        self.from_number = _check_sender(from_number) if from_number else None
        self.status_callback = status_callback
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.max_retries = max_retries
        self.sleep = sleep
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.rng = rng or random.Random()
        self.validate_numbers = validate_numbers
        self.key_param = key_param
        self._account_path = f"/{API_VERSION}/Accounts/{account_sid}"
        self.http = KeepAliveClient(
            self.base_url,
            auth=(account_sid, auth_token),
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TwilioClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the auth token
        return f"TwilioClient({self.account_sid!r}, base_url={self.base_url!r})"

    # --- API ---------------------------------------------------------------------------------------

    def send_sms(
        self, to: str, body: str, *, idempotency_key: str | None = None, status_callback: str | None = None
    ) -> SentMessage:
        """Create (send) one SMS. Raises a ``TwilioTerminalError`` subclass or ``TwilioTransientError``.

        Local checks first, without a request: the number (``TwilioInvalidNumber``, code 21211, unless
        ``validate_numbers=False``) and the body (``TwilioValidationError``: empty is 21602, over 1600
        characters is 21617). ``idempotency_key`` rides on the status callback URL (see module doc);
        without a callback URL it has nowhere to go and only shows up in our logs.
        """
        number = self._recipient(to)
        if not body or not body.strip():
            raise TwilioValidationError("The SMS body is empty.", code=21602)
        if len(body) > MAX_BODY_CHARS:
            raise TwilioValidationError(
                f"The SMS body has {len(body)} characters; Twilio accepts at most {MAX_BODY_CHARS}.", code=21617
            )
        if idempotency_key is not None and not _KEY.fullmatch(idempotency_key):
            raise ValueError("idempotency_key must be 1-200 printable ASCII characters without spaces")
        estimate = count_segments(body)
        form = {"To": number, "Body": body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            assert self.from_number is not None
            form["From"] = self.from_number
        callback = status_callback or self.status_callback
        if callback:
            form["StatusCallback"] = (
                callback_url_with_key(callback, idempotency_key, self.key_param) if idempotency_key else callback
            )
        data = self._request("POST", f"{self._account_path}/Messages.json", form=form, send=True)
        try:
            message = SentMessage.from_json(data, estimate=estimate)
        except ValueError:  # a 2xx without a message SID: accepted or not, we cannot tell
            raise TwilioTransientError("Twilio accepted the send without a message SID", maybe_sent=True) from None
        # Debug, like the SMTP client's "accepted": the message row is the record of each send, and a
        # line per message at campaign rates is noise (and CPU) in the worker's log.
        logger.debug(
            "twilio: message %s %s (key=%s, %s segment(s) %s)",
            message.sid,
            message.status,
            idempotency_key,
            estimate.segments,
            estimate.encoding,
        )
        return message

    def get_message(self, sid: str) -> SentMessage:
        """Fetch one message by SID (``TwilioNotFound`` when it does not exist)."""
        if not _MESSAGE_SID.fullmatch(sid or ""):
            raise ValueError("a message SID is two letters (SM, MM) followed by 32 hexadecimal characters")
        return SentMessage.from_json(self._request("GET", f"{self._account_path}/Messages/{sid}.json"))

    def find_messages(
        self, to: str, *, since: datetime | None = None, body: str | None = None, limit: int = 50
    ) -> list[SentMessage]:
        """Recent messages to ``to`` (newest first, one page of at most ``limit``), to reconcile a maybe-sent send.

        ``since`` keeps messages created at or after it (aware datetime; Twilio's dates have whole
        seconds and Twilio's clock is not ours: give a minute of slack); ``body`` keeps exact matches.
        Filtering is done here, not with Twilio's ``DateSent`` filter: a message still ``queued`` or
        ``accepted`` has no ``date_sent`` yet and would be missed.
        """
        number = self._recipient(to)
        floor = since.replace(microsecond=0) if since is not None else None
        params = {"To": number, "PageSize": str(min(max(limit, 1), 1000))}
        data = self._request("GET", f"{self._account_path}/Messages.json", params=params)
        rows = data.get("messages") if isinstance(data, Mapping) else None
        found: list[SentMessage] = []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, Mapping):
                continue
            message = SentMessage.from_json(row)
            if floor is not None and message.date_created is not None and message.date_created < floor:
                continue
            if body is not None and message.body != body:
                continue
            found.append(message)
        return found

    def test_connection(self) -> AccountInfo:
        """Fetch the account to prove the credentials; ``TwilioAuthError`` if wrong or the account is inactive."""
        data = self._request("GET", f"{self._account_path}.json")
        body: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        info = AccountInfo(
            sid=str(body.get("sid") or self.account_sid),
            friendly_name=str(body.get("friendly_name") or ""),
            status=str(body.get("status") or ""),
            type=str(body.get("type") or ""),
        )
        if not info.active:
            raise TwilioAuthError(f"The Twilio account is {info.status or 'not active'}.")
        return info

    # --- plumbing ----------------------------------------------------------------------------------

    def _recipient(self, to: str) -> str:
        if not self.validate_numbers:
            return to
        try:
            return validate_e164(to)
        except ValueError as exc:
            raise TwilioInvalidNumber(f"Invalid 'To' phone number: {exc}", code=21211) from None

    def _backoff(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))  # full jitter

    def _request(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        send: bool = False,
    ) -> Any:
        """Send with retries; return the decoded JSON of a 2xx, else raise. ``send`` marks a message create."""
        attempt = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            error: TwilioError
            try:
                response = self.http.request(method, path, data=form, params=params)
            except httpx.TimeoutException as exc:
                # Keep the class name only: the text may quote the URL (and with it a phone number).
                never_sent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                error = TwilioTransientError(
                    f"Twilio request timed out ({type(exc).__name__}) on {method} {path}",
                    maybe_sent=send and not never_sent,
                )
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError)
                error = TwilioTransientError(
                    f"Twilio connection failed ({type(exc).__name__}) on {method} {path}",
                    maybe_sent=send and not never_sent,
                )
            else:
                if 200 <= response.status_code < 300:
                    return self._decode(response, method, path, send)
                error = error_from_response(
                    response.status_code, self._decode_lenient(response), response.headers, maybe_sent=send
                )
                if isinstance(error, TwilioRateLimited):
                    if attempt >= self.max_retries or (error.retry_after or 0) > self.backoff_max:
                        # Out of attempts, or asked to wait longer than we block a worker: the task
                        # engine reschedules (it honours ``retry_after``).
                        if self.limiter is not None and error.retry_after:
                            self.limiter.penalize(error.retry_after)
                        raise error
                    self._wait_rate_limited(error, method, path, attempt)
                    attempt += 1
                    continue
                if not isinstance(error, TwilioTransientError):
                    raise error
            assert isinstance(error, TwilioTransientError)
            if error.maybe_sent:
                logger.warning("twilio %s %s: outcome unknown (%s); not resending", method, path, error.message)
                raise error
            if attempt >= self.max_retries:
                raise error
            delay = self._backoff(attempt)
            if error.retry_after is not None:
                delay = max(delay, min(error.retry_after, self.backoff_max))
            logger.warning(
                "twilio %s %s failed transiently (status=%s); retry %s/%s in %.2fs",
                method,
                path,
                error.status,
                attempt + 1,
                self.max_retries,
                delay,
            )
            self.sleep(delay)
            attempt += 1

    def _wait_rate_limited(self, error: TwilioRateLimited, method: str, path: str, attempt: int) -> None:
        # Twilio does not document a Retry-After on 429s; honour one when present, else back off
        # exponentially with "equal jitter" (never ~0 s, which would only hit the limit again).
        if error.retry_after is not None:
            wait = error.retry_after
        else:
            ceiling = min(self.backoff_max, max(1.0, self.backoff_base * (2 ** (attempt + 1))))
            wait = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if self.limiter is not None:
            self.limiter.penalize(wait)  # every worker on this account backs off, not only us
        logger.warning(
            "twilio %s %s rate limited (code=%s); retry %s/%s in %.2fs",
            method,
            path,
            error.code,
            attempt + 1,
            self.max_retries,
            wait,
        )
        self.sleep(wait)

    @staticmethod
    def _decode(response: Response, method: str, path: str, send: bool) -> Any:
        try:
            data = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            # A 2xx that is not Twilio JSON comes from something in between (proxy, captive portal).
            raise TwilioTransientError(
                f"Twilio answered {method} {path} with HTTP {response.status_code} but no JSON object "
                f"(content-type {response.headers.get('content-type', 'unknown')})",
                status=response.status_code,
                maybe_sent=send,
            )
        return data

    @staticmethod
    def _decode_lenient(response: Response) -> Any:
        try:
            return orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            return None
