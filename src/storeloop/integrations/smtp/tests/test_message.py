"""MIME structure, Message-ID, RFC 8058 headers and validation."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from storeloop.integrations.smtp.message import build_mime, message_id_for, serialize

from .conftest import make_spec


def reparse(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")  # the wire form has CRLF line endings


def test_text_only_is_a_single_utf8_part() -> None:
    mime = build_mime(make_spec(html=None, text="Grüße\n"), "mail.shop.example")
    assert mime.get_content_type() == "text/plain"
    assert mime.get_content_charset() == "utf-8"
    assert mime["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(reparse(serialize(mime))) == "Grüße\n"


def test_text_and_html_make_multipart_alternative_plain_first() -> None:
    mime = build_mime(make_spec(text="Grüße\n", html="<p>Grüße</p>"), "mail.shop.example")
    assert mime.get_content_type() == "multipart/alternative"
    assert mime["MIME-Version"] == "1.0"
    parts = list(reparse(serialize(mime)).iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all(p["MIME-Version"] is None for p in parts)  # only on the top level
    assert text_of(parts[0]) == "Grüße\n"
    assert text_of(parts[1]) == "<p>Grüße</p>\n"


def test_wire_form_is_7bit_with_encoded_unicode_headers() -> None:
    spec = make_spec(subject="Ihre Bestellung – Grüße aus Köln 🎉", from_name='Jürgen, "der" Händler')
    raw = serialize(build_mime(spec, "mail.shop.example"))
    assert raw.isascii()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"=?utf-8?" in raw
    parsed = reparse(raw)
    assert parsed["Subject"] == spec.subject
    assert parsed["From"].addresses[0].display_name == spec.from_name
    assert parsed["From"].addresses[0].addr_spec == "shop@shop.example"


def test_message_id_is_deterministic_from_our_id() -> None:
    spec = make_spec(message_id_local="msg_42.retry-safe")
    first = build_mime(spec, "mail.shop.example")
    second = build_mime(spec, "Mail.Shop.Example")
    assert first["Message-ID"] == second["Message-ID"] == "<msg_42.retry-safe@mail.shop.example>"
    assert message_id_for("msg_42.retry-safe", "mail.shop.example") == first["Message-ID"]


def test_date_header_is_utc() -> None:
    mime = build_mime(make_spec(), "mail.shop.example", date=datetime(2025, 5, 1, 12, 0, tzinfo=UTC))
    assert mime["Date"] == "Thu, 01 May 2025 12:00:00 +0000"


def test_marketing_mail_carries_rfc8058_headers_on_one_line() -> None:
    url = "https://shop.example/u/" + "t" * 150  # longer than a folded header line
    spec = make_spec(
        marketing=True, unsubscribe_url=url, unsubscribe_mailto="unsub+tok@shop.example?subject=unsubscribe"
    )
    raw = serialize(build_mime(spec, "mail.shop.example"))
    expected = f"List-Unsubscribe: <{url}>, <mailto:unsub+tok@shop.example?subject=unsubscribe>\r\n"
    assert expected.encode() in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
    parsed = reparse(raw)
    assert parsed["List-Unsubscribe"] == expected.split(": ", 1)[1].strip()


def test_transactional_mail_has_no_unsubscribe_headers_even_with_links() -> None:
    mime = build_mime(make_spec(unsubscribe_url="https://shop.example/u/tok"), "mail.shop.example")
    assert mime["List-Unsubscribe"] is None
    assert mime["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize(
    ("url", "mailto"),
    [
        (None, None),
        (None, "unsub@shop.example"),  # RFC 8058 needs https; mailto alone is not one-click
        ("http://shop.example/u/tok", None),
        ("https:///no-host", None),
        ("https://shop.example/u/a b", None),
        ("https://shop.example/u/<tok>", None),
    ],
)
def test_marketing_without_https_unsubscribe_is_rejected(url: str | None, mailto: str | None) -> None:
    with pytest.raises(ValueError, match="unsubscribe"):
        make_spec(marketing=True, unsubscribe_url=url, unsubscribe_mailto=mailto)


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"subject": "Hi\nX-Evil: 1"},
        {"from_name": "Shop\r\nBcc: victim@example.com"},
        {"to_addr": "customer@example.com\r\nBcc: victim@example.com"},
        {"reply_to": "help@shop.example\nBcc: victim@example.com"},
        {"headers": {"X-Campaign": "spring\r\nBcc: victim@example.com"}},
        {"marketing": True, "unsubscribe_url": "https://shop.example/u/tok\r\nBcc: victim@example.com"},
    ],
)
def test_header_injection_is_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        make_spec(**overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"headers": {"X-Bad:Name": "v"}}, "header names"),
        ({"headers": {"Bcc": "victim@example.com"}}, "cannot be overridden"),
        ({"headers": {"message-id": "<x@y>"}}, "cannot be overridden"),
        ({"message_id_local": "has space"}, "dot-atom"),
        ({"message_id_local": "a@b"}, "dot-atom"),
        ({"message_id_local": ""}, "1-200"),
        ({"to_addr": "not-an-address"}, "to_addr"),
        ({"to_addr": "jörg@example.com"}, "SMTPUTF8"),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_spec(**overrides)


def test_address_errors_do_not_echo_the_address() -> None:
    with pytest.raises(ValueError, match="to_addr") as info:
        make_spec(to_addr="secret.person@@example.com")
    assert "secret.person" not in str(info.value)


def test_internationalised_domain_is_idna_encoded() -> None:
    mime = build_mime(make_spec(to_addr="kunde@bücher.example"), "mail.shop.example")
    assert mime["To"].addresses[0].addr_spec == "kunde@xn--bcher-kva.example"


def test_extra_headers_and_reply_to_are_written() -> None:
    spec = make_spec(headers={"X-Storeloop-Campaign": "spring-sale"}, reply_to="help@shop.example")
    mime = build_mime(spec, "mail.shop.example")
    assert mime["X-Storeloop-Campaign"] == "spring-sale"
    assert mime["Reply-To"] == "help@shop.example"


def test_bad_message_id_domain_is_rejected() -> None:
    with pytest.raises(ValueError, match="domain"):
        build_mime(make_spec(), "not a domain")
