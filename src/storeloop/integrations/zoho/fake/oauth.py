"""The fake Zoho accounts server: refresh-token grant, access-token validity and limits.

Behaviour mirrors Zoho's documented token rules: answers are HTTP 200 even for failures
(``{"error": "invalid_code"}`` for a bad or revoked refresh token, ``{"error": "invalid_client"}``
for wrong client credentials, ``"Access Denied"`` when more than 10 tokens are minted from one
refresh token in 10 minutes); at most 15 access tokens are alive per refresh token and minting a
16th invalidates the oldest; access tokens live ``access_token_ttl`` seconds.
"""

from __future__ import annotations

import hmac
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from .faults import RollingWindow

MAX_LIVE_ACCESS_TOKENS = 15
SCOPE = "ZohoCRM.modules.ALL,ZohoCRM.settings.fields.ALL,ZohoCRM.org.READ,ZohoCRM.users.READ"

INVALID_TOKEN = {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}
AUTHENTICATION_FAILURE = {
    "code": "AUTHENTICATION_FAILURE",
    "details": {},
    "message": "Authentication failed",
    "status": "error",
}
ACCESS_DENIED = {
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class TokenAuthority:
    """Issues and checks access tokens for one OAuth client and one refresh token."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        access_token_ttl: float,
        seed: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.ttl = access_token_ttl
        self._clock = clock
        self._rng = random.Random(seed * 11 + 3)
        self._live: OrderedDict[str, float] = OrderedDict()  # token -> expires_at (epoch)
        self._mints = RollingWindow(600.0, monotonic)
        self._lock = threading.Lock()
        self.revoked = False
        self.refresh_count = 0  # access tokens actually issued
        self.token_requests = 0

    def issue(self, form: Mapping[str, str], *, api_domain: str, mint_limit: int) -> dict[str, Any]:
        """Answer one ``POST /oauth/v2/token`` (always HTTP 200, like Zoho)."""
        with self._lock:
            self.token_requests += 1
            if form.get("grant_type") != "refresh_token":
                return {"error": "unsupported_grant_type"}
            if not _same(form.get("client_id", ""), self.client_id) or not _same(
                form.get("client_secret", ""), self.client_secret
            ):
                return {"error": "invalid_client"}
            if self.revoked or not _same(form.get("refresh_token", ""), self.refresh_token):
                return {"error": "invalid_code"}
            if self._mints.admit(mint_limit) is not None:
                return dict(ACCESS_DENIED)
            token = f"1000.{self._rng.getrandbits(128):032x}.{self._rng.getrandbits(128):032x}"
            self._live[token] = self._clock() + self.ttl
            while len(self._live) > MAX_LIVE_ACCESS_TOKENS:
                self._live.popitem(last=False)  # the 16th token invalidates the oldest
            self.refresh_count += 1
            return {
                "access_token": token,
                "scope": SCOPE,
                "api_domain": api_domain,
                "token_type": "Bearer",
                "expires_in": int(self.ttl),
            }

    def revoke_token(self, token: str) -> dict[str, Any]:
        """``POST /oauth/v2/token/revoke?token=<refresh token>``."""
        with self._lock:
            if _same(token, self.refresh_token):
                self.revoked = True
                self._live.clear()  # revoking a refresh token kills its access tokens too
            else:
                self._live.pop(token, None)
        return {"status": "success"}

    def authenticate(self, header: str | None) -> dict[str, Any] | None:
        """None when the ``Authorization`` header carries a live token, else the 401 body."""
        if not header:
            return AUTHENTICATION_FAILURE
        scheme, _, token = header.strip().partition(" ")
        if scheme != "Zoho-oauthtoken" or not token:
            return INVALID_TOKEN
        with self._lock:
            expires_at = self._live.get(token.strip())
            if expires_at is None:
                return INVALID_TOKEN
            if expires_at <= self._clock():
                del self._live[token.strip()]
                return INVALID_TOKEN
        return None

    def expire_all(self) -> None:
        with self._lock:
            for token in self._live:
                self._live[token] = 0.0

    def revoke(self) -> None:
        self.revoke_token(self.refresh_token)

    @property
    def live_tokens(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for expires_at in self._live.values() if expires_at > now)
