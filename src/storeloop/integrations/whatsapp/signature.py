"""Meta webhook authentication: ``X-Hub-Signature-256`` and the GET verification handshake.

Every POST Meta makes to the callback URL carries ``X-Hub-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the *raw* request body keyed with the app secret. Meta signs the exact bytes it sends
(JSON with non-ASCII characters escaped as ``\\uXXXX``), so verify before parsing and never re-serialise
the JSON: any re-encoding changes the bytes and the signature no longer matches.

When the callback is registered (and again whenever it is edited), Meta checks ownership with
``GET callback?hub.mode=subscribe&hub.verify_token=<ours>&hub.challenge=<random>``: answer 200 with
the challenge as the whole body, otherwise 403.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="
# Meta sends a short number; anything else is refused rather than echoed back verbatim (the
# receiver reflects it into a response body, so keep it to harmless characters and a short length).
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,256}")


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``: ``sha256=<lowercase hex>``."""
    return _PREFIX + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of ``X-Hub-Signature-256`` over the raw body.

    False when the header is missing or malformed, or the app secret is empty (an unconfigured
    receiver must never accept unsigned deliveries).
    """
    if not header or not app_secret:
        return False
    header = header.strip()
    if header[: len(_PREFIX)].lower() != _PREFIX:
        return False
    expected = sign(app_secret, body)[len(_PREFIX) :].encode("ascii")
    given = header[len(_PREFIX) :].lower().encode("utf-8", "replace")
    return hmac.compare_digest(expected, given)


def _first(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if isinstance(value, list | tuple):  # urllib.parse.parse_qs gives lists
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def verify_challenge(params: Mapping[str, Any], verify_token: str) -> str | None:
    """The GET handshake: the ``hub.challenge`` to echo with 200, or None (answer 403).

    ``params`` is the query string as a mapping: a Django ``QueryDict``, a plain dict, or the lists
    from ``urllib.parse.parse_qs``. The token comparison is constant time.
    """
    if not verify_token:
        return None
    mode = _first(params, "hub.mode")
    token = _first(params, "hub.verify_token")
    challenge = _first(params, "hub.challenge")
    if mode != "subscribe" or token is None or challenge is None:
        return None
    if not hmac.compare_digest(token.encode("utf-8"), verify_token.encode("utf-8")):
        return None
    return challenge if _CHALLENGE.fullmatch(challenge) else None
