"""WhatsApp Cloud API adapter: ``WhatsAppClient`` for one business phone number.

- ``POST /{version}/{phone_number_id}/messages`` for text (only inside the 24-hour customer-service
  window) and approved templates (any time); ``GET /{version}/{phone_number_id}`` to test the
  connection. Bearer auth (a system-user or permanent token).
- Every attempt first calls ``limiter.acquire()``. The limiter is shared by every client of the same
  phone number / WhatsApp Business Account, because the throughput limit (130429) and the WABA limit
  (80007) are per number / per account: a rate-limit answer ``penalize``\\s it so every worker backs
  off, not only this one. The pair rate limit (131056, one recipient) only delays this call.
- Retries (at most ``max_retries``): rate limits wait Meta's hint (or a per-code default); Meta
  service errors (1, 2, 131000, 131016), 5xx with a Graph error envelope and connection failures
  that surely happened before the request left are retried with full-jitter back-off. A wait longer
  than ``max_retry_wait`` (a WABA limit can ask for minutes) is not slept here: the error is raised
  with ``retry_after`` so the task engine reschedules instead of blocking a worker.

Sends are not idempotent and the Cloud API has no idempotency key: a send whose answer was lost
(read timeout, dropped connection, a proxy's 502/504) may have been accepted and is therefore never
resent here. It raises ``WhatsAppTransientError(maybe_sent=True)``; the caller reconciles, for
instance by passing ``callback_data`` (``biz_opaque_callback_data``, echoed in every status webhook
of that message) and waiting for a status before deciding to send again.

HTTP goes through ``integrations.keepalive.KeepAliveClient`` (a lean keep-alive pool on ``http.client``
that raises httpx's exception classes; httpx's own client costs too much CPU per send, ADR 8).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import orjson
import phonenumbers

from storeloop.core.ports import RateLimiter
from storeloop.integrations.keepalive import KeepAliveClient, Response

from .errors import (
    WhatsAppError,
    WhatsAppInvalidRequest,
    WhatsAppRateLimited,
    WhatsAppTransientError,
    error_from_response,
)
from .models import (
    MAX_TEXT,
    PhoneNumberInfo,
    SentMessage,
    body_components,
    template_parameter_count,
    window_open,
)

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "WhatsAppClient",
    "normalize_recipient",
    "template_parameter_count",
    "window_open",
]

logger = logging.getLogger("storeloop.integrations.whatsapp")

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"
DEFAULT_TIMEOUT = httpx.Timeout(15, connect=5)
USER_AGENT = "Storeloop/0.1 (whatsapp-client)"
MAX_CALLBACK_DATA = 512  # characters of biz_opaque_callback_data
PHONE_FIELDS = "display_phone_number,verified_name,quality_rating"
_VERSION = re.compile(r"v\d+\.\d+")

Components = Sequence[Mapping[str, Any]]


def normalize_recipient(to: str) -> str:
    """The recipient as Meta's ``wa_id`` form: international digits without ``+`` ("15551234567").

    Raises ``WhatsAppInvalidRequest`` (terminal) for something that cannot be a phone number, so a bad
    contact record fails fast instead of costing an API call.
    """
    raw = (to or "").strip()
    # "+44…" and "0044…" are international; bare digits are taken as country code first (Meta's wa_id
    # form). A national "07700…" is refused rather than guessed: "+7700…" would be another country.
    candidate = raw if raw.startswith("+") else "+" + (raw[2:] if raw.startswith("00") else raw)
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        raise WhatsAppInvalidRequest("recipient is not an international phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise WhatsAppInvalidRequest("recipient is not a possible phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))[1:]


def _components(parameters: Sequence[str] | Components | None) -> list[dict[str, Any]]:
    if not parameters:
        return []
    if isinstance(parameters, str | bytes):
        raise TypeError("parameters must be a list of strings or a list of component objects")
    if all(isinstance(p, str) for p in parameters):
        return body_components([str(p) for p in parameters])
    if all(isinstance(p, Mapping) for p in parameters):
        return [dict(p) for p in parameters if isinstance(p, Mapping)]
    raise TypeError("parameters must be all strings (body {{1}}, {{2}}, ...) or all component objects")


class WhatsAppClient:
    """Client for one WhatsApp business phone number. Use as a context manager or call close()."""

    def __init__(
        self,
        access_token: str,
        phone_number_id: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        limiter: RateLimiter | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_wait: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if not access_token:
            raise ValueError("a WhatsApp access token is required")
        if not phone_number_id or not phone_number_id.isdigit():
            raise ValueError("phone_number_id must be the numeric id of the business phone number")
        if not _VERSION.fullmatch(api_version):
            raise ValueError("api_version looks like 'v21.0'")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.phone_number_id = phone_number_id
        self.api_version = api_version
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.max_retries = max_retries
        self.sleep = sleep
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_wait = max_retry_wait
        self.rng = rng or random.Random()
        self.http = KeepAliveClient(
            self.base_url,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {access_token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> WhatsAppClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the token
        return f"WhatsAppClient({self.base_url!r}, phone_number_id={self.phone_number_id!r})"

    # --- helpers callers use without a request -----------------------------------------------------

    window_open = staticmethod(window_open)
    template_parameter_count = staticmethod(template_parameter_count)

    # --- API ---------------------------------------------------------------------------------------

    def test_connection(self) -> PhoneNumberInfo:
        """Check token, permissions and phone number id; return the number's display name and quality."""
        data = self._request("GET", f"/{self.api_version}/{self.phone_number_id}", params={"fields": PHONE_FIELDS})
        if not isinstance(data, Mapping) or not data.get("id"):
            raise WhatsAppTransientError("WhatsApp Cloud API answered the phone number lookup without an id")

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return PhoneNumberInfo(
            id=str(data["id"]),
            display_phone_number=text("display_phone_number"),
            verified_name=text("verified_name"),
            quality_rating=text("quality_rating"),
            raw=dict(data),
        )

    def send_text(
        self,
        to: str,
        body: str,
        *,
        preview_url: bool = False,
        callback_data: str | None = None,
        reply_to: str | None = None,
    ) -> SentMessage:
        """Free-form text. Meta refuses it (131047 → ``WhatsAppWindowClosed``) outside the 24-hour window.

        ``callback_data`` (≤ 512 characters) comes back in every status webhook of this message.
        """
        if not body or not body.strip():
            raise WhatsAppInvalidRequest("text message body is empty")
        if len(body) > MAX_TEXT:
            raise WhatsAppInvalidRequest(f"text message body is {len(body)} characters; WhatsApp allows {MAX_TEXT}")
        message: dict[str, Any] = {"type": "text", "text": {"preview_url": preview_url, "body": body}}
        if reply_to:
            message["context"] = {"message_id": reply_to}
        return self._send(to, message, callback_data)

    def send_template(
        self,
        to: str,
        name: str,
        language: str,
        parameters: Sequence[str] | Components | None = None,
        *,
        callback_data: str | None = None,
    ) -> SentMessage:
        """An approved template; allowed outside the 24-hour window.

        ``parameters`` is either the body's positional values (``["#727", "Friday"]`` for ``{{1}}``,
        ``{{2}}``) or complete ``components`` objects (header/body/button) passed through as they are.
        """
        if not name or not language:
            raise WhatsAppInvalidRequest("template name and language are required")
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        components = _components(parameters)
        if components:
            template["components"] = components
        return self._send(to, {"type": "template", "template": template}, callback_data)

    # --- plumbing ----------------------------------------------------------------------------------

    def _send(self, to: str, message: dict[str, Any], callback_data: str | None) -> SentMessage:
        wa_id = normalize_recipient(to)
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": wa_id}
        body.update(message)
        if callback_data is not None:
            if len(callback_data) > MAX_CALLBACK_DATA:
                raise WhatsAppInvalidRequest(f"callback_data is longer than {MAX_CALLBACK_DATA} characters")
            body["biz_opaque_callback_data"] = callback_data
        data = self._request("POST", f"/{self.api_version}/{self.phone_number_id}/messages", body=body)
        # A 200 without a message id cannot be told apart from an accepted send: do not resend blindly.
        messages = data.get("messages") if isinstance(data, Mapping) else None
        first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], Mapping) else {}
        wamid = first.get("id")
        if not isinstance(wamid, str) or not wamid:
            raise WhatsAppTransientError(
                "WhatsApp Cloud API answered the send without a message id", status=200, maybe_sent=True
            )
        contacts = data.get("contacts") if isinstance(data, Mapping) else None
        contact = contacts[0] if isinstance(contacts, list) and contacts and isinstance(contacts[0], Mapping) else {}
        status = first.get("message_status")
        return SentMessage(
            wamid=wamid,
            to=str(contact.get("wa_id") or wa_id),
            input=str(contact.get("input") or wa_id),
            message_status=status if isinstance(status, str) else None,
        )

    def backoff(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))  # full jitter

    def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None) -> Any:
        """Send with retries; return the decoded JSON of a 2xx answer, else raise a ``WhatsAppError``."""
        is_send = method == "POST"
        shown = path.replace(self.phone_number_id, "{phone_number_id}")  # keep logs and messages stable
        content = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        attempt = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            error: WhatsAppError
            try:
                response = self.http.request(method, path, params=params, content=content, headers=headers)
            except httpx.TimeoutException as exc:
                # Keep the exception class only: its text may quote the URL. A connect/pool timeout
                # means the request never left; any later timeout may hide an accepted send.
                error = WhatsAppTransientError(
                    f"WhatsApp request timed out ({type(exc).__name__}) on {method} {shown}",
                    maybe_sent=is_send and not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
                )
            except httpx.TransportError as exc:
                error = WhatsAppTransientError(
                    f"WhatsApp connection failed ({type(exc).__name__}) on {method} {shown}",
                    maybe_sent=is_send and not isinstance(exc, httpx.ConnectError),
                )
            else:
                if 200 <= response.status_code < 300:
                    return self._decode(response, method, shown, is_send)
                error = error_from_response(
                    response.status_code, self._decode_lenient(response), response.headers, was_send=is_send
                )
            if not isinstance(error, WhatsAppTransientError):
                raise error
            if isinstance(error, WhatsAppRateLimited) and error.account_wide and self.limiter is not None:
                # Every worker on this number/account backs off, not only us.
                self.limiter.penalize(error.retry_after if error.retry_after is not None else 1.0)
            if error.maybe_sent or attempt >= self.max_retries:
                raise error
            if error.retry_after is not None and error.retry_after > self.max_retry_wait:
                raise error  # minutes (e.g. a WABA limit): let the task engine reschedule, do not block a worker
            self.sleep(self._delay(error, method, shown, attempt))
            attempt += 1

    def _delay(self, error: WhatsAppTransientError, method: str, path: str, attempt: int) -> float:
        if isinstance(error, WhatsAppRateLimited):
            wait = error.retry_after if error.retry_after is not None else 1.0
            # A little jitter so workers released together do not hit the limit again at once.
            delay = wait + self.rng.uniform(0, min(1.0, wait * 0.1))
        else:
            delay = self.backoff(attempt)
            if error.retry_after is not None:
                delay = max(delay, min(error.retry_after, self.backoff_max))
        logger.warning(
            "whatsapp %s %s failed transiently (status=%s code=%s); retry %s/%s in %.2fs",
            method,
            path,
            error.status,
            error.code,
            attempt + 1,
            self.max_retries,
            delay,
        )
        return delay

    @staticmethod
    def _decode(response: Response, method: str, path: str, is_send: bool) -> Any:
        try:
            return orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            # A 2xx HTML page comes from something in front of Graph; for a send we cannot know more.
            raise WhatsAppTransientError(
                f"WhatsApp Cloud API answered {method} {path} with a non-JSON body "
                f"(content-type {response.headers.get('content-type', 'unknown')})",
                status=response.status_code,
                maybe_sent=is_send,
            ) from None

    @staticmethod
    def _decode_lenient(response: Response) -> Any:
        try:
            return orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            return None
