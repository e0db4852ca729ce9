"""HTTP plumbing for the HubSpot client: auth header, shared rate limiter, retries, JSON decoding.

Every attempt first calls ``limiter.acquire()``: the limiter is shared by every store that uses the
same HubSpot account, because HubSpot's burst limit (e.g. 190 requests / 10 s) is per account.

Retries (at most ``max_retries`` per call):
- 429: wait ``Retry-After`` (or one whole rolling window, ``X-HubSpot-RateLimit-Interval-Milliseconds``),
  after telling the limiter (``penalize``) so every other user of the account backs off too; no
  429 storm. A ``DAILY`` 429 is raised at once: nothing will succeed before the daily reset.
- 5xx, timeouts, connection errors: exponential back-off with full jitter. Safe for everything we
  send except line item ``batch/create`` (``idempotent=False``), which is retried only when the
  request surely did not reach HubSpot; otherwise the caller reconciles (see client.py).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from storeloop.core.ports import RateLimiter

from .errors import HubSpotError, HubSpotRateLimited, HubSpotTransientError, error_from_response

logger = logging.getLogger("storeloop.integrations.hubspot")

DEFAULT_BASE_URL = "https://api.hubapi.com"
DEFAULT_TIMEOUT = httpx.Timeout(15, connect=5)
USER_AGENT = "Storeloop/0.1 (hubspot-client)"


class Transport:
    def __init__(
        self,
        token: str,
        *,
        base_url: str,
        limiter: RateLimiter | None,
        timeout: httpx.Timeout,
        max_retries: int,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None],
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if not token:
            raise ValueError("a HubSpot access token is required")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.max_retries = max_retries
        self.sleep = sleep
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.rng = rng or random.Random()
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
        )

    def close(self) -> None:
        self.http.close()

    def backoff(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))  # full jitter

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        idempotent: bool = True,
    ) -> tuple[int, Any]:
        """Send with retries; return ``(status, decoded JSON or None)`` for any 2xx, else raise."""
        content = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        attempt = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            error: HubSpotError
            try:
                response = self.http.request(method, path, params=params, content=content, headers=headers)
            except httpx.TimeoutException as exc:
                # Keep the exception class only: its text may quote the URL.
                error = HubSpotTransientError(
                    f"HubSpot request timed out ({type(exc).__name__}) on {method} {path}",
                    maybe_applied=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
                )
            except httpx.TransportError as exc:
                error = HubSpotTransientError(
                    f"HubSpot connection failed ({type(exc).__name__}) on {method} {path}",
                    maybe_applied=not isinstance(exc, httpx.ConnectError),
                )
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return status, self._decode(response, method, path)
                error = error_from_response(status, self._decode_lenient(response), response.headers)
                if isinstance(error, HubSpotRateLimited):
                    if error.policy_name == "DAILY" or attempt >= self.max_retries:
                        raise error
                    self._wait_rate_limit(error, method, path, attempt)
                    attempt += 1
                    continue
                if not isinstance(error, HubSpotTransientError):
                    raise error
            assert isinstance(error, HubSpotTransientError)
            if attempt >= self.max_retries or (not idempotent and error.maybe_applied):
                raise error
            delay = self.backoff(attempt)
            if error.retry_after is not None:
                delay = max(delay, min(error.retry_after, self.backoff_max))
            logger.warning(
                "hubspot %s %s failed transiently (status=%s category=%s); retry %s/%s in %.2fs",
                method,
                path,
                error.status,
                error.category,
                attempt + 1,
                self.max_retries,
                delay,
            )
            self.sleep(delay)
            attempt += 1

    def _wait_rate_limit(self, error: HubSpotRateLimited, method: str, path: str, attempt: int) -> None:
        wait = error.retry_after if error.retry_after is not None else 10.0
        if self.limiter is not None:
            self.limiter.penalize(wait)  # every store on this account backs off, not only us
        # A little jitter so workers released together do not hit the window edge at once.
        delay = wait + self.rng.uniform(0, min(1.0, wait * 0.1))
        logger.warning(
            "hubspot %s %s rate limited (policy=%s); retry %s/%s in %.2fs",
            method,
            path,
            error.policy_name,
            attempt + 1,
            self.max_retries,
            delay,
        )
        self.sleep(delay)

    @staticmethod
    def _decode(response: httpx.Response, method: str, path: str) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            # A 2xx HTML page comes from a proxy in front of HubSpot, not from HubSpot: try again later.
            raise HubSpotTransientError(
                f"HubSpot answered {method} {path} with a non-JSON body "
                f"(content-type {response.headers.get('content-type', 'unknown')})",
                status=response.status_code,
            ) from None

    @staticmethod
    def _decode_lenient(response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            return None
