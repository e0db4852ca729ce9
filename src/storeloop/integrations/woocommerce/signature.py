"""WooCommerce webhook signatures.

``X-WC-Webhook-Signature`` is ``base64(HMAC-SHA256(raw_body, secret))`` of the *raw* 32-byte digest
(not hex). The signature covers the exact bytes WooCommerce sent, so verify before parsing and never
re-serialise the JSON (PHP escapes ``/`` and non-ASCII characters; any re-encoding changes the bytes).
WooCommerce signs with the stored secret after ``wp_specialchars_decode``; secrets made of URL-safe
characters (what Storeloop generates) are unaffected by that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "X-WC-Webhook-Signature"


def compute_signature(secret: str, body: bytes) -> str:
    """The value WooCommerce puts in ``X-WC-Webhook-Signature`` for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of a delivery's signature header; False when missing or the secret is empty."""
    if not header or not secret:
        return False
    expected = compute_signature(secret, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8"))
