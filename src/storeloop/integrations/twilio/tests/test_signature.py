"""X-Twilio-Signature against twilio-python's own test vectors (tests/unit/test_request_validator.py)."""

from __future__ import annotations

import pytest

from storeloop.integrations.twilio.signature import (
    compute_body_hash,
    compute_signature,
    parse_form,
    signing_string,
    url_variants,
    validate_json_signature,
    validate_signature,
)

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
BODY = '{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


class QueryDictLike(dict[str, list[str]]):
    """Mimics Django's QueryDict: item access gives the last value, ``getlist`` all of them."""

    def __getitem__(self, key: str) -> str:  # type: ignore[override]
        return super().__getitem__(key)[-1]

    def getlist(self, key: str) -> list[str]:
        return list(super().__getitem__(key))


def test_known_vector() -> None:
    assert compute_signature(TOKEN, URL, PARAMS) == EXPECTED
    assert validate_signature(TOKEN, URL, PARAMS, EXPECTED)


def test_repeated_parameters_are_sorted_by_value() -> None:
    params = {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234"]}
    assert compute_signature(TOKEN, URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    query_dict = QueryDictLike(Sid=["CA123"], SidAccount=["AC123"], Digits=["5678", "1234"])
    assert compute_signature(TOKEN, URL, query_dict) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", EXPECTED),  # port removed (https)
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),  # signed with :1234
        ("https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed with :443
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # signed with :80
    ],
)
def test_port_variants_like_the_sdk(url: str, signature: str) -> None:
    assert validate_signature(TOKEN, url, PARAMS, signature)


def test_url_variants() -> None:
    assert url_variants("https://a.example/x?y=1") == ["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
    assert url_variants("https://A.example:8443/x") == ["https://A.example:8443/x", "https://A.example/x"]
    assert url_variants("http://u:p@[::1]/x") == ["http://u:p@[::1]/x", "http://u:p@[::1]:80/x"]


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (URL, {**PARAMS, "Digits": "1235"}),  # tampered value
        (URL, {**PARAMS, "Extra": "1"}),  # added parameter
        (URL, {k: v for k, v in PARAMS.items() if k != "Caller"}),  # removed parameter
        ("https://mycompany.com/myapp.php?foo=1&bar=3", PARAMS),  # tampered query string
        ("https://evil.example/myapp.php?foo=1&bar=2", PARAMS),  # other host
        ("https://mycompany.com/other.php?foo=1&bar=2", PARAMS),  # other path
    ],
)
def test_tampering_is_rejected(url: str, params: dict[str, str]) -> None:
    assert not validate_signature(TOKEN, url, params, EXPECTED)


def test_missing_header_wrong_token_and_garbage() -> None:
    assert not validate_signature(TOKEN, URL, PARAMS, None)
    assert not validate_signature(TOKEN, URL, PARAMS, "")
    assert not validate_signature("", URL, PARAMS, EXPECTED)
    assert not validate_signature("54321", URL, PARAMS, EXPECTED)
    assert not validate_signature(TOKEN, URL, PARAMS, "not base64 at all ✓")
    assert validate_signature(TOKEN, URL, PARAMS, f"  {EXPECTED}\n")  # surrounding whitespace tolerated


def test_blank_values_are_signed() -> None:
    form = parse_form(b"Body=&From=%2B14155552671&MediaUrl0=a&MediaUrl0=b")
    assert form == {"Body": [""], "From": ["+14155552671"], "MediaUrl0": ["a", "b"]}
    assert signing_string("https://x.test/h", form) == "https://x.test/hBodyFrom+14155552671MediaUrl0aMediaUrl0b"
    signature = compute_signature(TOKEN, "https://x.test/h", form)
    assert validate_signature(TOKEN, "https://x.test/h", form, signature)
    without_blank = {k: v for k, v in form.items() if k != "Body"}
    assert not validate_signature(TOKEN, "https://x.test/h", without_blank, signature)


def test_no_params_signs_the_url_alone() -> None:
    assert compute_signature(TOKEN, URL) == compute_signature(TOKEN, URL, {})


def test_json_body_variant() -> None:
    assert compute_body_hash(BODY) == BODY_HASH
    assert compute_body_hash(BODY.encode()) == BODY_HASH
    url = f"{URL}&bodySHA256={BODY_HASH}"
    assert validate_json_signature(TOKEN, url, BODY, "a9nBmqA0ju/hNViExpshrM61xv4=")  # the SDK's vector
    assert validate_json_signature(TOKEN, url, BODY.encode(), "a9nBmqA0ju/hNViExpshrM61xv4=")
    assert not validate_json_signature(TOKEN, url, BODY.replace("true", "false"), "a9nBmqA0ju/hNViExpshrM61xv4=")
    assert not validate_json_signature(TOKEN, url, BODY, EXPECTED)
    # Without bodySHA256 the body would not be covered at all: rejected (the SDK accepts it).
    assert not validate_json_signature(TOKEN, URL, BODY, compute_signature(TOKEN, URL))
