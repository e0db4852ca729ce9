"""X-Hub-Signature-256 and the GET verification handshake."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs

import pytest

from storeloop.integrations.whatsapp.signature import sign, verify_challenge, verify_signature

SECRET = "app-secret"
BODY = b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[]}],"x":"caf\\u00e9"}'


def test_sign_is_hex_hmac_sha256_of_the_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY) == f"sha256={expected}"


def test_good_signature_passes_also_with_uppercase_hex_or_prefix() -> None:
    header = sign(SECRET, BODY)
    assert verify_signature(SECRET, BODY, header)
    assert verify_signature(SECRET, BODY, "SHA256=" + header[7:].upper())
    assert verify_signature(SECRET, BODY, f"  {header}\n")


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha1=abc", "deadbeef", "sha256=zz"])
def test_missing_or_malformed_header_fails(header: str | None) -> None:
    assert not verify_signature(SECRET, BODY, header)


def test_wrong_secret_or_tampered_body_fails() -> None:
    header = sign(SECRET, BODY)
    assert not verify_signature("other-secret", BODY, header)
    assert not verify_signature(SECRET, BODY.replace(b"caf", b"cag"), header)
    assert not verify_signature(SECRET, BODY + b" ", header)


def test_reserialised_json_does_not_verify() -> None:
    # Meta signs its escaped-unicode bytes; the same JSON re-encoded as UTF-8 is different bytes.
    header = sign(SECRET, BODY)
    assert not verify_signature(SECRET, BODY.replace(b"\\u00e9", "é".encode()), header)


def test_empty_secret_never_verifies() -> None:
    assert not verify_signature("", BODY, sign("", BODY))


def test_handshake_echoes_the_challenge_only_for_the_right_token() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    assert verify_challenge(params, "verify-me") == "1158201444"
    assert verify_challenge({**params, "hub.verify_token": "nope"}, "verify-me") is None
    assert verify_challenge({**params, "hub.mode": "unsubscribe"}, "verify-me") is None
    assert verify_challenge({k: v for k, v in params.items() if k != "hub.challenge"}, "verify-me") is None
    assert verify_challenge({k: v for k, v in params.items() if k != "hub.verify_token"}, "verify-me") is None
    assert verify_challenge(params, "") is None


def test_handshake_accepts_parse_qs_lists_and_refuses_odd_challenges() -> None:
    query = "hub.mode=subscribe&hub.challenge=42&hub.verify_token=verify-me"
    assert verify_challenge(parse_qs(query), "verify-me") == "42"
    odd = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "<script>"}
    assert verify_challenge(odd, "verify-me") is None
    assert verify_challenge({**odd, "hub.challenge": "9" * 300}, "verify-me") is None
