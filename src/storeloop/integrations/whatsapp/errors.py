"""Errors raised by the WhatsApp Cloud API adapter.

Graph answers failures with ``{"error": {"message", "type", "code", "error_subcode"?, "error_data":
{"messaging_product", "details"}?, "is_transient"?, "fbtrace_id"}}``. Meta's advice is to branch on
``code`` (and read ``details``), not on the HTTP status, the subcode (deprecated since v16.0) or
``type``: almost every error, rate limits included, has ``"type": "OAuthException"``, so ``type``
says nothing about authentication.

The same codes also arrive asynchronously in ``failed`` status webhooks (``statuses[].errors[]``),
so :func:`error_from_code` serves both paths: the dispatcher can treat a 131047 from a webhook
exactly like one from the send call.

Every class keeps ``status`` (HTTP, None without a response or for webhook errors), ``code``,
``subcode``, a *scrubbed* ``message`` (Meta quotes phone numbers back; they become ``<phone>``),
``details`` (scrubbed too) and ``fbtrace_id`` (quote it to Meta support).
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from storeloop.core.errors import TerminalError, TransientError

_PHONE = re.compile(r"\+?\d(?:[\s.()-]?\d){6,}")

# Rate limits: code -> (default wait in seconds when Meta gives no hint, shared by the whole account?).
# Graph rarely sends Retry-After; 80007 and 4 may come with X-Business-Use-Case-Usage.
RATE_LIMITS: dict[int, tuple[float, bool]] = {
    130429: (1.0, True),  # Cloud API throughput (messages per second per phone number)
    80007: (60.0, True),  # WhatsApp Business Account rate limit
    4: (60.0, True),  # app-level "API Too Many Calls"
    17: (60.0, True),  # generic Graph user request limit
    613: (60.0, True),  # generic Graph "calls within one hour"
    # Pair rate limit: too many messages to ONE recipient (roughly one per 6 s). Only that
    # conversation must wait; the account's shared limiter is left alone.
    131056: (6.0, False),
}
# Temporary failures on Meta's side: the request was refused, retry later.
SERVICE_CODES = frozenset({1, 2, 131000, 131016, 133004})
AUTH_CODES = frozenset({0, 3, 10, 190, *range(200, 300)})
INVALID_REQUEST_CODES = frozenset({100, 131008, 131009, 131021, 131030, 33})
WINDOW_CLOSED = 131047
UNDELIVERABLE = 131026
UNSUPPORTED_TYPE = 131051
OPTED_OUT = 131050
TEMPLATE_CODES = range(132000, 133000)  # 132000 param count, 132001 missing, 132012 param format, ...


def scrub(text: str) -> str:
    """Replace phone numbers (personal data) in a provider message before it is kept or logged."""
    return _PHONE.sub("<phone>", text)


class WhatsAppError(Exception):
    """Base class: ``status`` (HTTP), ``code``, ``subcode``, ``message``, ``details``, ``fbtrace_id``."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        details: str | None = None,
    ) -> None:
        message = scrub(message)
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.details = scrub(details) if details else None

    def __str__(self) -> str:
        parts = [self.message]
        if self.details and self.details not in self.message:
            parts.append(f"({self.details})")
        for name in ("code", "subcode", "status", "fbtrace_id"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        return " ".join(parts)


class WhatsAppTerminalError(WhatsAppError, TerminalError):
    """A failure that retrying will not fix."""


class WhatsAppAuthError(WhatsAppTerminalError):
    """190 (token expired or invalid), 0, 3, 10, 200-299 (permissions), or a bare HTTP 401/403."""


class WhatsAppInvalidRequest(WhatsAppTerminalError):
    """100/131008/131009 (bad or missing parameter), 131030 (test number not allowed), or a check the
    client makes before sending (empty text, text over 4096 characters, impossible phone number)."""


class WhatsAppWindowClosed(WhatsAppTerminalError):
    """131047: more than 24 h since the contact's last message; only an approved template may go.

    The dispatcher falls back to a template (or gives up) instead of retrying the free text.
    """


class WhatsAppUndeliverable(WhatsAppTerminalError):
    """131026: not a WhatsApp user, outdated client, or terms of service not accepted."""


class WhatsAppUnsupportedMessage(WhatsAppTerminalError):
    """131051: message type not supported."""


class WhatsAppTemplateError(WhatsAppTerminalError):
    """132xxx: 132000 parameter count, 132001 template/language missing, 132012 parameter format, ..."""


class WhatsAppRecipientOptedOut(WhatsAppTerminalError):
    """131050: the user stopped marketing messages from this business.

    The caller records a withdrawal of WhatsApp *marketing* consent; utility templates and replies
    inside the service window remain allowed by Meta.
    """


class WhatsAppTransientError(WhatsAppError, TransientError):
    """Rate limits, Meta service errors, 5xx, timeouts and connection errors.

    ``retry_after`` is the wait in seconds (Meta's hint or a per-code default). ``maybe_sent`` is True
    when a *send* may have been accepted although no answer says so (read timeout, dropped
    connection, a proxy's 502/504): the Cloud API has no idempotency key, so sending again could
    deliver the message twice. The caller reconciles first, e.g. by waiting for a status webhook that
    echoes its ``biz_opaque_callback_data``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        details: str | None = None,
        retry_after: float | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message, status=status, code=code, subcode=subcode, fbtrace_id=fbtrace_id, details=details)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class WhatsAppRateLimited(WhatsAppTransientError):
    """130429/80007/4 (account-wide: the shared limiter is penalized) or 131056 (one recipient).

    A rate-limited request was refused before processing, so it was never sent.
    """

    @property
    def account_wide(self) -> bool:
        return RATE_LIMITS.get(self.code or -1, (0.0, True))[1]


def error_from_code(
    code: int | None,
    message: str,
    *,
    status: int | None = None,
    subcode: int | None = None,
    fbtrace_id: str | None = None,
    details: str | None = None,
    is_transient: bool | None = None,
    retry_after: float | None = None,
    maybe_sent: bool = False,
) -> WhatsAppError:
    """Map a Graph/WhatsApp error code (from an HTTP answer or a webhook) onto the error tree."""
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "subcode": subcode,
        "fbtrace_id": fbtrace_id,
        "details": details,
    }
    if code in RATE_LIMITS or (code is None and status == 429):
        default = RATE_LIMITS.get(code or -1, (1.0, True))[0]
        wait = retry_after if retry_after is not None else default
        return WhatsAppRateLimited(message, retry_after=wait, **common)
    if code in SERVICE_CODES:
        return WhatsAppTransientError(message, retry_after=retry_after, maybe_sent=maybe_sent, **common)
    if code == WINDOW_CLOSED:
        return WhatsAppWindowClosed(message, **common)
    if code == OPTED_OUT:
        return WhatsAppRecipientOptedOut(message, **common)
    if code == UNDELIVERABLE:
        return WhatsAppUndeliverable(message, **common)
    if code == UNSUPPORTED_TYPE:
        return WhatsAppUnsupportedMessage(message, **common)
    if code is not None and code in TEMPLATE_CODES:
        return WhatsAppTemplateError(message, **common)
    if code in AUTH_CODES or (code is None and status in (401, 403)):
        return WhatsAppAuthError(message, **common)
    if code in INVALID_REQUEST_CODES:
        return WhatsAppInvalidRequest(message, **common)
    # Unknown code: trust Graph's own ``is_transient`` flag, then the HTTP status.
    if is_transient or (status is not None and (status >= 500 or status == 408)):
        return WhatsAppTransientError(message, retry_after=retry_after, maybe_sent=maybe_sent, **common)
    # 131048 spam rate limit / 131049 per-user marketing cap land here on purpose: Meta says not to
    # retry soon, and a stale campaign message a day later is worse than none.
    return WhatsAppTerminalError(message, **common)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` or ``X-Business-Use-Case-Usage``; None if neither helps."""
    value = (headers.get("Retry-After") or "").strip()
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                return max(0.0, when.timestamp() - (time.time() if now is None else now))
        else:
            if seconds >= 0:
                return seconds
    # Business use case limits: {"<business id>": [{"type": ..., "estimated_time_to_regain_access": <minutes>}]}
    usage = headers.get("X-Business-Use-Case-Usage")
    if usage:
        try:
            decoded = orjson.loads(usage)
        except orjson.JSONDecodeError:
            return None
        minutes = [
            entry.get("estimated_time_to_regain_access")
            for entries in (decoded.values() if isinstance(decoded, dict) else ())
            if isinstance(entries, list)
            for entry in entries
            if isinstance(entry, dict)
        ]
        waits = [float(m) * 60 for m in minutes if isinstance(m, int | float) and not isinstance(m, bool) and m > 0]
        if waits:
            return max(waits)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def error_from_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None, *, was_send: bool = False
) -> WhatsAppError:
    """Map an HTTP error status and its decoded (possibly non-JSON, None) body onto the tree.

    An answer that carries Graph's error envelope means Graph refused the call: nothing was sent.
    A 5xx *without* the envelope comes from a proxy or load balancer in front of Graph; for a send
    (``was_send``) we cannot tell whether Graph accepted it, so it is marked ``maybe_sent``.
    """
    headers = headers or {}
    envelope = payload.get("error") if isinstance(payload, Mapping) else None
    retry_after = parse_retry_after(headers)
    if not isinstance(envelope, Mapping):
        return error_from_code(
            None,
            f"WhatsApp Cloud API answered HTTP {status}",
            status=status,
            retry_after=retry_after,
            maybe_sent=was_send and status >= 500,
        )
    data = envelope.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    message = envelope.get("message")
    trace = envelope.get("fbtrace_id")
    transient = envelope.get("is_transient")
    return error_from_code(
        _int(envelope.get("code")),
        message if isinstance(message, str) and message else f"WhatsApp Cloud API answered HTTP {status}",
        status=status,
        subcode=_int(envelope.get("error_subcode")),
        fbtrace_id=trace if isinstance(trace, str) else None,
        details=details if isinstance(details, str) else None,
        is_transient=transient if isinstance(transient, bool) else None,
        retry_after=retry_after,
    )
