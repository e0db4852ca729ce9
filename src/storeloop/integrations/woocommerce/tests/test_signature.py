from __future__ import annotations

import base64
import hashlib
import hmac

from storeloop.integrations.woocommerce.signature import compute_signature, verify_signature

BODY = b'{"id":727,"status":"processing","billing":{"email":"zo\\u00eb@example.com"},"url":"https:\\/\\/shop"}'
SECRET = "whsec_5Dk2-q"


def test_compute_signature_is_base64_of_raw_hmac_sha256_digest() -> None:
    expected = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
    assert compute_signature(SECRET, BODY) == expected
    assert len(base64.b64decode(compute_signature(SECRET, BODY))) == 32  # raw digest, not hex


def test_compute_signature_known_vector() -> None:
    # printf "{}" | openssl dgst -sha256 -hmac secret -binary | base64
    assert compute_signature("secret", b"{}") == "dzJZAsrKgS3CWXM6rNBGtzgXNyx3e42VtAJkdHRRbhM="


def test_verify_accepts_the_right_signature() -> None:
    assert verify_signature(SECRET, BODY, compute_signature(SECRET, BODY)) is True
    assert verify_signature(SECRET, BODY, " " + compute_signature(SECRET, BODY) + " ") is True


def test_verify_rejects_a_tampered_body_or_bad_header() -> None:
    good = compute_signature(SECRET, BODY)
    assert verify_signature(SECRET, BODY + b" ", good) is False
    assert verify_signature(SECRET, BODY, good[:-2] + "==") is False
    assert verify_signature(SECRET, BODY, hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()) is False
    assert verify_signature(SECRET, BODY, "not-base64-äöü") is False


def test_verify_rejects_missing_header_or_empty_secret() -> None:
    assert verify_signature(SECRET, BODY, None) is False
    assert verify_signature(SECRET, BODY, "") is False
    assert verify_signature("", BODY, compute_signature("", BODY)) is False


def test_verify_rejects_the_wrong_secret() -> None:
    assert verify_signature("other-secret", BODY, compute_signature(SECRET, BODY)) is False
