"""Errors raised by the HubSpot adapter.

HubSpot answers failures with ``{"status": "error", "message", "correlationId", "category",
"subCategory"?, "errors"?, "context"?}`` (429s carry ``errorType``/``policyName`` instead of, or as
well as, ``category``). Every class keeps ``status`` (HTTP status, ``None`` for network failures),
``category``, a *scrubbed* ``message`` (HubSpot quotes e-mail addresses back, e.g. "Email address
x@y is invalid"; they are replaced by ``<email>``) and ``correlation_id`` (quote it to HubSpot
support). Each class sits on one side of the core retry axis (transient vs terminal).
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

from storeloop.core.errors import TerminalError, TransientError

_EMAIL = re.compile(r"[^\s@\"'<>\[\],;:]+@[^\s@\"'<>\[\],;:]+")
DEFAULT_RATE_WINDOW = 10.0  # HubSpot's burst window (TEN_SECONDLY_ROLLING)


def scrub(text: str) -> str:
    """Remove e-mail addresses (personal data) from a provider message before it is kept or logged."""
    return _EMAIL.sub("<email>", text)


class HubSpotError(Exception):
    """Base class: ``status`` (HTTP, None without response), ``category``, ``message``, ``correlation_id``."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        category: str | None = None,
        correlation_id: str | None = None,
        sub_category: str | None = None,
        codes: tuple[str, ...] = (),
    ) -> None:
        message = scrub(message)
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.category = category
        self.correlation_id = correlation_id
        self.sub_category = sub_category
        self.codes = codes  # ``errors[].code`` details, e.g. ("PROPERTY_DOESNT_EXIST",)

    def __str__(self) -> str:
        parts = [self.message]
        if self.category:
            parts.append(f"category={self.category}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.correlation_id:
            parts.append(f"correlationId={self.correlation_id}")
        return " ".join(parts)


class HubSpotTerminalError(HubSpotError, TerminalError):
    """A HubSpot failure that retrying will not fix (any 4xx but 408/429)."""


class HubSpotAuthError(HubSpotTerminalError):
    """401 (bad/revoked token) or 403 (token lacks a scope, e.g. ``crm.objects.deals.write``)."""


class HubSpotValidationError(HubSpotTerminalError):
    """400: invalid property values, unknown properties, non-unique ``idProperty``, bad input shape."""


class HubSpotNotFound(HubSpotTerminalError):
    """404: object, property or route does not exist."""


class HubSpotConflict(HubSpotTerminalError):
    """409: the object or property already exists (e.g. a plain create hitting a unique value)."""


class HubSpotTransientError(HubSpotError, TransientError):
    """5xx, timeouts and connection errors. ``retry_after`` is HubSpot's hint in seconds.

    ``maybe_applied`` is True when the request may have reached HubSpot and been acted on (read
    timeout, 5xx): a non-idempotent call (line item create) must reconcile before sending it again.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        category: str | None = None,
        correlation_id: str | None = None,
        retry_after: float | None = None,
        maybe_applied: bool = True,
    ) -> None:
        super().__init__(message, status=status, category=category, correlation_id=correlation_id)
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied


class HubSpotRateLimited(HubSpotTransientError):
    """429 still answered after the client's retries (or a DAILY limit, which is never retried).

    ``policy_name`` is ``TEN_SECONDLY_ROLLING`` (burst), ``DAILY`` or ``SECONDLY`` (search).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        category: str | None = "RATE_LIMITS",
        correlation_id: str | None = None,
        retry_after: float | None = None,
        policy_name: str | None = None,
    ) -> None:
        # A 429 is rejected before HubSpot processes the request: never applied.
        super().__init__(
            message,
            status=status,
            category=category,
            correlation_id=correlation_id,
            retry_after=retry_after,
            maybe_applied=False,
        )
        self.policy_name = policy_name


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def rate_window_seconds(headers: Mapping[str, str]) -> float:
    """The burst window from ``X-HubSpot-RateLimit-Interval-Milliseconds`` (10 s when absent)."""
    raw = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    try:
        millis = float(raw) if raw is not None else 0.0
    except ValueError:
        millis = 0.0
    return millis / 1000 if millis > 0 else DEFAULT_RATE_WINDOW


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) and value else None


def error_from_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> HubSpotError:
    """Map an HTTP error status and its decoded (possibly non-JSON, None) body onto the tree."""
    headers = headers or {}
    body: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    message = _text(body, "message") or f"HubSpot answered HTTP {status}"
    category = _text(body, "category") or _text(body, "errorType")
    correlation_id = _text(body, "correlationId")
    sub = body.get("subCategory")
    sub_category = sub if isinstance(sub, str) else None
    details = body.get("errors")
    codes = tuple(
        d["code"]
        for d in (details if isinstance(details, list) else [])
        if isinstance(d, Mapping) and isinstance(d.get("code"), str)
    )
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is None:
            # No Retry-After: wait one whole burst window, after which the rolling window is clear.
            retry_after = rate_window_seconds(headers)
        return HubSpotRateLimited(
            message,
            category=category or "RATE_LIMITS",
            correlation_id=correlation_id,
            retry_after=retry_after,
            policy_name=_text(body, "policyName"),
        )
    if status == 408 or status >= 500:
        return HubSpotTransientError(
            message,
            status=status,
            category=category,
            correlation_id=correlation_id,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    kwargs: dict[str, Any] = {
        "status": status,
        "category": category,
        "correlation_id": correlation_id,
        "sub_category": sub_category,
        "codes": codes,
    }
    if status in (401, 403):
        return HubSpotAuthError(message, **kwargs)
    if status == 400:
        return HubSpotValidationError(message, **kwargs)
    if status == 404:
        return HubSpotNotFound(message, **kwargs)
    if status == 409:
        return HubSpotConflict(message, **kwargs)
    return HubSpotTerminalError(message, **kwargs)
