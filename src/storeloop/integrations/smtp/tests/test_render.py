"""``render`` (the fast writer) must read back exactly like ``serialize(build_mime(...))``."""

from __future__ import annotations

import datetime as dt
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from hypothesis import given, settings
from hypothesis import strategies as st

from storeloop.integrations.smtp.message import EmailMessageSpec, _render_simple, build_mime, render, serialize

DATE = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
HEADERS = ["From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post",
           "MIME-Version"]  # fmt: skip

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)
TRICKY_NAMES = ["Ann", "Shop & Co.", 'A "quoted" name', "Müller GmbH", "O'Brien, Ltd", "=?utf-8?q?x?="]
names = st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30),
                  st.sampled_from(TRICKY_NAMES))  # fmt: skip
subjects = st.one_of(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=90),
                     st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40))  # fmt: skip


def parsed(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def summary(message: EmailMessage) -> dict[str, object]:
    body = message.get_body(("plain",))
    html = message.get_body(("html",))
    return {
        **{name: str(message[name]) if message[name] is not None else None for name in HEADERS},
        "type": message.get_content_type(),
        "text": body.get_content() if body is not None else None,
        "html": html.get_content() if html is not None else None,
        "defects": [type(d).__name__ for part in message.walk() for d in part.defects],
    }


@settings(max_examples=300, deadline=None)
@given(
    subject=subjects, text=texts, html=st.one_of(st.none(), texts), from_name=names, to_name=names,
    marketing=st.booleans(), reply=st.booleans(),
)  # fmt: skip
def test_the_fast_writer_reads_back_like_the_email_package(
    subject: str, text: str, html: str | None, from_name: str | None, to_name: str | None, marketing: bool, reply: bool
) -> None:
    try:
        spec = EmailMessageSpec(
            from_addr="shop@shop.example", to_addr="ann@example.com", subject=subject, text=text, html=html,
            from_name=from_name, to_name=to_name, message_id_local="m-42", marketing=marketing,
            unsubscribe_url="https://loop.example/u/tok" if marketing else None,
            reply_to="help@shop.example" if reply else None,
        )  # fmt: skip
    except ValueError:
        return  # invalid input (CR/LF in a header): refused the same way on both paths
    ours = summary(parsed(render(spec, "mail.shop.example", date=DATE)))
    theirs = summary(parsed(serialize(build_mime(spec, "mail.shop.example", date=DATE))))
    assert ours == theirs


def test_the_fast_writer_is_used_for_an_ordinary_campaign_mail() -> None:
    spec = EmailMessageSpec(
        from_addr="shop@shop.example", to_addr="ann@example.com", subject="News for Ann", text="Hello Ann!\nBye",
        html="<p>Hello Ann!</p>", from_name="The Shop", message_id_local="m-1", marketing=True,
        unsubscribe_url="https://loop.example/u/tok",
    )  # fmt: skip
    raw = _render_simple(spec, "mail.shop.example", DATE)
    assert raw is not None
    assert b"List-Unsubscribe: <https://loop.example/u/tok>\r\n" in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert summary(parsed(raw))["defects"] == []


def test_the_date_of_a_mail_sent_now_is_the_current_second() -> None:
    """ "Now" is written once per second and reused: each mail still carries its own second."""
    import time
    from email.utils import parsedate_to_datetime

    spec = EmailMessageSpec(from_addr="shop@shop.example", to_addr="ann@example.com", subject="Hi", text="Hello",
                            message_id_local="sl-1")  # fmt: skip
    for _ in range(3):
        before = int(time.time())
        date = BytesParser(policy=policy.default).parsebytes(render(spec, "shop.example"))["Date"]
        after = int(time.time())
        assert before <= parsedate_to_datetime(str(date)).timestamp() <= after
        time.sleep(0.6)
