"""Zoho OAuth2: data centres, the cached access token, where it is stored, and when to refresh it.

Zoho limits how many access tokens one refresh token may mint (10 per 10 minutes, at most 15 alive;
the 16th silently invalidates the oldest), so every worker must share one access token. The
``TokenStore`` protocol is that shared place: ``MemoryTokenStore`` for tests and single processes,
a database-backed (encrypted) store in the Django layer for production.

Quirks handled here:
- the token endpoint answers failures with HTTP **200** and ``{"error": "invalid_code"}``;
- ``expires_in`` is seconds, except in the legacy shape that also has ``expires_in_sec`` (then ms);
- the response's ``api_domain`` is the API host to use (it may differ from the DC default);
- a throttled refresh answers 200 ``{"error": "Access Denied", ...}``; that is a wait, not a revocation.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import (
    REVOKED_TOKEN_ERRORS,
    ZohoAuthError,
    ZohoAuthRevoked,
    ZohoPayloadError,
    ZohoRateLimited,
    ZohoTransientError,
)

__all__ = [
    "DC_ALIASES",
    "REFRESH_SKEW_SECONDS",
    "ZOHO_DATA_CENTERS",
    "CachedToken",
    "LockingTokenStore",
    "MemoryTokenStore",
    "TokenManager",
    "TokenStore",
    "parse_token_response",
    "resolve_data_center",
]

# dc -> (accounts server, API domain). Token URL = accounts + "/oauth/v2/token".
ZOHO_DATA_CENTERS: dict[str, tuple[str, str]] = {
    "com": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "com.au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),  # note: zohocloud.ca
    "cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
}
DC_ALIASES: dict[str, str] = {"us": "com", "au": "com.au", "zoho.com": "com", "zoho.eu": "eu"}
REFRESH_SKEW_SECONDS = 60.0
# The throttle ("Access Denied") is counted over 10 minutes; wait a minute before trying again.
_THROTTLE_RETRY_AFTER = 60.0


def resolve_data_center(dc: str) -> tuple[str, str]:
    """``(accounts_url, api_url)`` for a DC code such as ``"eu"`` (aliases ``us``/``au`` accepted)."""
    key = dc.strip().lower().lstrip(".")
    key = DC_ALIASES.get(key, key)
    try:
        return ZOHO_DATA_CENTERS[key]
    except KeyError:
        raise ValueError(f"unknown Zoho data centre {dc!r}; expected one of {sorted(ZOHO_DATA_CENTERS)}") from None


@dataclass(frozen=True, slots=True)
class CachedToken:
    """An access token, the API domain it belongs to and its expiry (epoch seconds)."""

    access_token: str = field(repr=False)
    api_domain: str
    expires_at: float

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        return self.expires_at - (time.time() if now is None else now) <= seconds


class TokenStore(Protocol):
    """Where the shared access token lives. Implementations must be safe across threads."""

    def load(self) -> CachedToken | None: ...

    def save(self, token: CachedToken) -> None: ...


@runtime_checkable
class LockingTokenStore(TokenStore, Protocol):
    """A store that can also serialise refreshes across processes (optional).

    ``refresh_lock()`` is held around "re-read, refresh, save"; a database store can back it with
    ``select_for_update`` on the token row or an advisory lock, so that N workers whose token
    expires together mint one new token, not N. Without it, refreshes are serialised per process.
    """

    def refresh_lock(self) -> AbstractContextManager[object]: ...


class MemoryTokenStore:
    """In-process store (tests, one worker). Share one instance between clients to share the token."""

    def __init__(self, token: CachedToken | None = None) -> None:
        self._token = token
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self.saves = 0

    def refresh_lock(self) -> AbstractContextManager[object]:
        return self._refresh_lock

    def load(self) -> CachedToken | None:
        with self._lock:
            return self._token

    def save(self, token: CachedToken) -> None:
        with self._lock:
            self._token = token
            self.saves += 1

    def __repr__(self) -> str:
        return f"MemoryTokenStore(saves={self.saves})"


def _expires_in_seconds(payload: Mapping[str, Any]) -> float:
    raw = payload.get("expires_in")
    if not isinstance(raw, int | float | str) or isinstance(raw, bool):
        return 3600.0  # documented lifetime when the field is missing
    try:
        value = float(raw)
    except ValueError:
        return 3600.0
    # Legacy answers carried expires_in in ms next to expires_in_sec (the SDK still checks for it).
    if "expires_in_sec" in payload:
        value = value / 1000.0
    return max(value, 0.0)


def parse_token_response(
    status: int, payload: Any, *, default_api_domain: str, now: float | None = None
) -> CachedToken:
    """Turn a token-endpoint answer into a ``CachedToken`` or the right error (never logs values)."""
    current = time.time() if now is None else now
    if status >= 500 or status in (408, 429):
        raise ZohoTransientError(f"Zoho accounts server answered HTTP {status}", status=status)
    if not isinstance(payload, Mapping):
        if status >= 400:
            raise ZohoAuthRevoked(f"Zoho accounts server rejected the refresh (HTTP {status})", status=status)
        raise ZohoPayloadError("Zoho accounts server answered with a non-JSON body", status=status)
    token = payload.get("access_token")
    if isinstance(token, str) and token:
        api_domain = payload.get("api_domain")
        domain = api_domain.rstrip("/") if isinstance(api_domain, str) and api_domain else default_api_domain
        return CachedToken(token, domain, current + _expires_in_seconds(payload))
    error = payload.get("error")
    error_text = error if isinstance(error, str) else ""
    normalized = error_text.strip().lower().replace(" ", "_")
    if normalized in REVOKED_TOKEN_ERRORS:
        raise ZohoAuthRevoked(
            "Zoho rejected the refresh token or client credentials; reconnect the Zoho account",
            status=status,
            code=error_text,
        )
    if normalized == "access_denied":
        raise ZohoRateLimited(
            "Zoho throttled access-token refreshes (more than 10 in 10 minutes)",
            status=status,
            code=error_text,
            retry_after=_THROTTLE_RETRY_AFTER,
        )
    if status == 400:  # a 400 without a known error: the grant itself is unusable
        raise ZohoAuthRevoked("Zoho accounts server rejected the refresh (HTTP 400)", status=400, code=error_text)
    raise ZohoAuthError(
        f"Zoho accounts server did not issue an access token ({error_text or 'no error code'})",
        status=status,
        code=error_text or None,
    )


# Refresh locks for stores without their own, one per store object (the process-wide fallback).
_PROCESS_LOCKS: weakref.WeakKeyDictionary[object, threading.Lock] = weakref.WeakKeyDictionary()
_PROCESS_LOCKS_GUARD = threading.Lock()
_UNREFERENCEABLE_STORE_LOCK = threading.Lock()


def _refresh_lock_for(store: TokenStore) -> AbstractContextManager[object]:
    if isinstance(store, LockingTokenStore):
        return store.refresh_lock()
    with _PROCESS_LOCKS_GUARD:
        try:
            return _PROCESS_LOCKS.setdefault(store, threading.Lock())
        except TypeError:  # not weak-referenceable: one lock shared by all such stores
            return _UNREFERENCEABLE_STORE_LOCK


class TokenManager:
    """Hands out a valid access token, refreshing through ``refresh`` only when it must.

    A token is refreshed when none is stored or it expires within ``skew`` seconds. Refreshes run
    under the store's refresh lock and re-read the store first, so clients sharing a store mint one
    token between them. After an API 401, ``token(stale=...)`` refreshes only if the store still
    holds the rejected token (another worker may already have saved a newer one).
    """

    def __init__(
        self,
        store: TokenStore,
        refresh: Callable[[], CachedToken],
        *,
        clock: Callable[[], float] = time.time,
        skew: float = REFRESH_SKEW_SECONDS,
    ) -> None:
        self.store = store
        self._refresh = refresh
        self._clock = clock
        self._skew = skew
        self.refresh_count = 0

    def _usable(self, cached: CachedToken | None, stale: str | None) -> bool:
        return (
            cached is not None
            and not cached.expires_within(self._skew, now=self._clock())
            and (stale is None or cached.access_token != stale)
        )

    def token(self, *, stale: str | None = None) -> CachedToken:
        cached = self.store.load()
        if cached is not None and self._usable(cached, stale):
            return cached
        with _refresh_lock_for(self.store):
            cached = self.store.load()  # another client may have refreshed while we waited
            if cached is not None and self._usable(cached, stale):
                return cached
            fresh = self._refresh()
            self.refresh_count += 1
            self.store.save(fresh)
            return fresh
