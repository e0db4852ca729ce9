"""Errors raised by the WooCommerce adapter.

WooCommerce answers every failure with the WP REST envelope ``{"code", "message", "data": {"status"}}``.
Each class keeps ``status`` (HTTP status or ``None`` for network failures), ``wc_code`` (the envelope
``code``) and ``message``, and sits on one side of the core retry axis: ``WooTransientError`` is a
``TransientError`` (retry later), everything else is a ``TerminalError``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from storeloop.core.errors import TerminalError, TransientError


class WooCommerceError(Exception):
    """Base class: ``status`` is the HTTP status (None when no response), ``wc_code`` the WC code."""

    def __init__(self, message: str, *, status: int | None = None, wc_code: str | None = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.wc_code = wc_code

    def __str__(self) -> str:
        parts = [self.message]
        if self.wc_code:
            parts.append(f"code={self.wc_code}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        return " ".join(parts)


class WooTerminalError(WooCommerceError, TerminalError):
    """A WooCommerce failure that retrying will not fix."""


class WooAuthError(WooTerminalError):
    """401/403: wrong or revoked keys, or a key without the needed read/write scope."""


class WooNotFound(WooTerminalError):
    """404: the resource does not exist (or was permanently deleted)."""


class WooBadRequest(WooTerminalError):
    """Any other 4xx (e.g. 400 ``rest_invalid_param``, 410 already trashed), or an unexpected 3xx."""


class WooPayloadError(WooTerminalError):
    """The shop answered, but the body is not the documented shape (names the bad field)."""


class WooTransientError(WooCommerceError, TransientError):
    """429, 5xx, timeouts and connection errors. ``retry_after`` is the server's hint in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        wc_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, wc_code=wc_code)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_from_response(status: int, payload: Any, *, retry_after: float | None = None) -> WooCommerceError:
    """Map an HTTP error status and its (decoded, possibly non-JSON) body onto the error tree."""
    wc_code: str | None = None
    message = f"WooCommerce answered HTTP {status}"
    if isinstance(payload, Mapping):
        code = payload.get("code")
        msg = payload.get("message")
        if isinstance(code, str):
            wc_code = code
        if isinstance(msg, str) and msg:
            # WC messages are fixed strings ("Invalid ID.", "Consumer secret is invalid."), never
            # customer data, so they are safe to keep.
            message = msg
    if status == 429 or status == 408 or status >= 500:
        return WooTransientError(message, status=status, wc_code=wc_code, retry_after=retry_after)
    if status in (401, 403):
        return WooAuthError(message, status=status, wc_code=wc_code)
    if status == 404:
        return WooNotFound(message, status=status, wc_code=wc_code)
    return WooBadRequest(message, status=status, wc_code=wc_code)
