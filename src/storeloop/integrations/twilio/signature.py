"""``X-Twilio-Signature``: how Twilio signs the webhooks it sends (status callbacks, inbound SMS).

Algorithm, as in twilio-python's ``twilio/request_validator.py``:

1. Start from the **full URL** Twilio requested, query string included, exactly as configured
   (scheme, host, port, path, percent-encoding: a proxy that rewrites any of these breaks it).
2. Form POSTs: sort the parameter names; for each name append ``name + value``, and for a repeated
   name append every value, values sorted. Empty values count (``Body=`` adds ``"Body"``), so parse
   the body with blank values kept. Parameters in the query string are only part of the URL.
3. ``base64(HMAC-SHA1(key=auth token, message=UTF-8 string))``.
4. Quirk: Twilio is not consistent about the port in the URL it signs, so the SDK accepts a
   signature computed over the URL **with** the default port (``:443``/``:80``) added and over the
   URL **without** any port. We do the same, and compare in constant time.

JSON webhooks (``Content-Type: application/json``) carry ``bodySHA256=<hex sha256 of the raw
body>`` in the URL instead: the signature covers the URL alone (no parameters) and the body hash
must match. Unlike the SDK (which passes when the parameter is missing) we reject a JSON delivery
without ``bodySHA256``: otherwise the body would not be covered by the signature at all.

Validate with the account's **primary** auth token: requests are signed with it, not with API keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

SIGNATURE_HEADER = "X-Twilio-Signature"
BODY_HASH_PARAM = "bodySHA256"

Params = Mapping[str, str | Sequence[str]]


def _values(params: Any, name: str) -> list[str]:
    """All values of ``name``: lists as they are; ``getlist`` for Django QueryDict / Werkzeug MultiDict."""
    getlist = getattr(params, "getlist", None)
    if callable(getlist):
        return [str(v) for v in getlist(name)]
    value = params[name]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def signing_string(url: str, params: Params | None = None) -> str:
    """The exact string Twilio signs: the URL, then every ``name + value`` sorted."""
    parts = [url]
    for name in sorted(set(params or ())):
        for value in sorted(_values(params, name)):
            parts.append(name + value)
    return "".join(parts)


def compute_signature(auth_token: str, url: str, params: Params | None = None) -> str:
    """The ``X-Twilio-Signature`` value Twilio sends for a form POST of ``params`` to ``url``."""
    mac = hmac.new(auth_token.encode("utf-8"), signing_string(url, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _host_and_userinfo(netloc: str) -> tuple[str, str]:
    """Split ``netloc`` into (``user:pass@`` or "", host without port), keeping the host's case."""
    userinfo, at, hostport = netloc.rpartition("@")
    host = (
        hostport[: hostport.index("]") + 1] if hostport.startswith("[") and "]" in hostport else hostport.split(":")[0]
    )
    return userinfo + at, host


def url_variants(url: str) -> list[str]:
    """``url`` as given, without its port and with the scheme's default port (deduplicated).

    Mirrors twilio-python's ``remove_port``/``add_port``: an explicit port is dropped in one variant
    and kept in the other; a URL without a port is also tried with ``:443`` (https) or ``:80``.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: only the URL as given can match
        return [url]
    userinfo, host = _host_and_userinfo(parts.netloc)
    default = 443 if parts.scheme == "https" else 80
    without = urlunsplit(parts._replace(netloc=userinfo + host))
    with_port = urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{port if port is not None else default}"))
    return list(dict.fromkeys((url, without, with_port)))


def _matches(auth_token: str, urls: Iterable[str], params: Params | None, header: str) -> bool:
    given = header.strip().encode("utf-8")
    matched = False
    for candidate in urls:
        expected = compute_signature(auth_token, candidate, params).encode("ascii")
        matched |= hmac.compare_digest(expected, given)  # no early exit: same work for every variant
    return matched


def validate_signature(auth_token: str, url: str, params: Params | None, header: str | None) -> bool:
    """True when ``header`` is Twilio's signature of a form POST of ``params`` to ``url``.

    ``params`` are the decoded form fields (a dict of str or lists of str, or a QueryDict); ``url``
    is the full public URL Twilio called, query string included. False for a missing header or an
    empty token.
    """
    if not header or not auth_token:
        return False
    return _matches(auth_token, url_variants(url), params, header)


def compute_body_hash(body: bytes | str) -> str:
    """Hex SHA-256 of a JSON webhook body, as Twilio puts it in ``bodySHA256``."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return hashlib.sha256(raw).hexdigest()


def validate_json_signature(auth_token: str, url: str, body: bytes | str, header: str | None) -> bool:
    """True for a JSON webhook whose URL carries the body's ``bodySHA256`` and whose signature covers that URL."""
    if not header or not auth_token:
        return False
    expected = parse_qs(urlsplit(url).query).get(BODY_HASH_PARAM)
    if not expected:
        return False
    body_ok = hmac.compare_digest(compute_body_hash(body).encode("ascii"), expected[0].lower().encode("utf-8"))
    return _matches(auth_token, url_variants(url), None, header) and body_ok


def parse_form(body: bytes) -> dict[str, list[str]]:
    """Decode an ``application/x-www-form-urlencoded`` body for signing: blank values and repeats kept."""
    out: dict[str, list[str]] = {}
    for name, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        out.setdefault(name, []).append(value)
    return out
