"""Errors raised by the Zoho CRM adapter.

Zoho answers top-level failures with ``{"code", "details", "message", "status": "error"}`` and
per-record failures with the same shape inside ``data[]``. Every class keeps ``status`` (HTTP status,
``None`` for network failures), ``code`` (Zoho's code), ``message`` and a *sanitised* ``details``
(only structural keys such as ``api_name``/``json_path``; Zoho's ``duplicate_record`` carries a CRM
user's name, so it is dropped). Each class sits on one side of the core retry axis.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from storeloop.core.errors import TerminalError, TransientError

# Detail keys that never hold customer data (field names, paths, limits, record ids).
_SAFE_DETAIL_KEYS = frozenset(
    {
        "api_name",
        "json_path",
        "expected_data_type",
        "maximum_length",
        "supported_values",
        "resource_path_index",
        "id",
        "retry_after",
        "limit",
        "window",
        "permissions",
        "param_name",
        "dependency_error",
    }
)

# 401 codes that mean "this access token is no longer good": refresh once and repeat the call.
# INVALID_OAUTHTOKEN is the spelling on Zoho's token-validity page; AUTHENTICATION_FAILURE is
# reported by third-party clients for stale tokens too.
REFRESHABLE_401_CODES = frozenset({"INVALID_TOKEN", "INVALID_OAUTHTOKEN", "AUTHENTICATION_FAILURE"})

# Token-endpoint ``error`` values that mean the refresh token (or the client) is gone for good.
REVOKED_TOKEN_ERRORS = frozenset(
    {"invalid_code", "invalid_client", "invalid_client_secret", "invalid_grant", "unauthorized_client"}
)


def sanitize_details(details: Any) -> dict[str, Any]:
    if not isinstance(details, Mapping):
        return {}
    return {k: v for k, v in details.items() if k in _SAFE_DETAIL_KEYS}


class ZohoError(Exception):
    """Base class. ``status`` is the HTTP status (None when no response), ``code`` Zoho's code."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.code = code
        self.details: dict[str, Any] = sanitize_details(details)

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        field = self.details.get("api_name")
        if isinstance(field, str):
            parts.append(f"field={field}")
        return " ".join(parts)


class ZohoTerminalError(ZohoError, TerminalError):
    """A Zoho failure that retrying will not fix."""


class ZohoAuthRevoked(ZohoTerminalError):
    """The refresh token (or the OAuth client) was revoked or is invalid: reconnect the account.

    The token endpoint said ``invalid_code``/``invalid_client`` (Zoho answers these with HTTP 200)
    or rejected the request with 400. Mark the connection broken; no API call can succeed.
    """


class ZohoAuthError(ZohoTerminalError):
    """401 after one refresh, 401 OAUTH_SCOPE_MISMATCH, or 403 NO_PERMISSION."""


class ZohoValidationError(ZohoTerminalError):
    """A 4xx Zoho will answer the same way again (bad module, bad field, bad body)."""


class ZohoSetupError(ZohoTerminalError):
    """The CRM account lacks something the sync needs (e.g. the unique field Storeloop_Order_Ref)."""


class ZohoPayloadError(ZohoTerminalError):
    """Zoho answered 2xx, but the body is not the documented shape."""


class ZohoTransientError(ZohoError, TransientError):
    """5xx, timeouts and connection errors. ``retry_after`` is a server hint in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.retry_after = retry_after


class ZohoRateLimited(ZohoTransientError):
    """429 TOO_MANY_REQUESTS (API credits or concurrency), or the token endpoint's "Access Denied"
    throttle (more than 10 access tokens per refresh token in 10 minutes)."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _body_retry_after(details: Any) -> float | None:
    # The v8 OAS 429 example carries details.retry_after (seconds); real headers are undocumented.
    if isinstance(details, Mapping):
        value = details.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


def error_from_response(status: int, payload: Any, *, retry_after: float | None = None) -> ZohoError:
    """Map an HTTP error status and its decoded (possibly non-JSON) body onto the error tree."""
    code: str | None = None
    message = f"Zoho answered HTTP {status}"
    details: Any = None
    if isinstance(payload, Mapping):
        raw_code, raw_message = payload.get("code"), payload.get("message")
        if isinstance(raw_code, str):
            code = raw_code
        if isinstance(raw_message, str) and raw_message:
            message = raw_message  # Zoho messages are fixed strings, never record values
        details = payload.get("details")
    if status == 429 or code == "TOO_MANY_REQUESTS":
        hint = retry_after if retry_after is not None else _body_retry_after(details)
        return ZohoRateLimited(message, status=status, code=code, details=details, retry_after=hint)
    if status >= 500 or status == 408:
        return ZohoTransientError(message, status=status, code=code, details=details, retry_after=retry_after)
    if status in (401, 403):
        return ZohoAuthError(message, status=status, code=code, details=details)
    return ZohoValidationError(message, status=status, code=code, details=details)
