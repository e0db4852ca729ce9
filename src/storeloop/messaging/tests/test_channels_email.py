"""EmailChannel against the real fake SMTP relay on loopback: outcome mapping, headers, reuse.

Adapter-level tests call the port (``send_message``) directly; the ones that go through the
dispatcher use ``transaction=True`` because the dispatcher builds channels in worker threads.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from django.test import Client

from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.messaging.channels.base import Envelope, Outcome
from storeloop.messaging.channels.connections import check_channel, connect_smtp
from storeloop.messaging.channels.email import footer_words
from storeloop.messaging.channels.factory import channel_for, close_channels
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.models import Message, MessagingConnection
from storeloop.messaging.templates import TemplateRepository
from storeloop.messaging.templating import Rendered

pytestmark = pytest.mark.django_db
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_channels() -> Iterator[None]:
    yield
    close_channels()


@pytest.fixture
def connection(store: Any, smtp: FakeSmtpServer) -> MessagingConnection:
    return connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                        from_addr="shop@shop.example", from_name="Test Shop", messages_per_second=1000)  # fmt: skip


def envelope(n: int, *, to: str = "", marketing: bool = False, unsubscribe_url: str = "") -> Envelope:
    return Envelope(
        message_id=n, idempotency_key=str(uuid.UUID(int=n)), to=to or f"customer{n}@example.com",
        rendered=Rendered(subject=f"Order {n}", text=f"Hello {n}", html=f"<p>Hello {n}</p>"),
        marketing=marketing, unsubscribe_url=unsubscribe_url,
    )  # fmt: skip


def outcomes(results: list[Any]) -> list[Outcome]:
    return [r.outcome for r in results]


def test_sent_mail_has_the_message_id_of_its_idempotency_key_and_one_connection_serves_batches(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection
) -> None:
    channel = channel_for(store, "email")
    first = channel.send_message([envelope(1), envelope(2)])
    second = channel_for(store, "email").send_message([envelope(3)])
    assert channel_for(store, "email") is channel
    assert outcomes(first + second) == [Outcome.SENT] * 3
    assert [r.provider_message_id for r in first] == [f"<sl-{uuid.UUID(int=n)}@shop.example>" for n in (1, 2)]
    assert smtp.message_ids() == [r.provider_message_id for r in first + second]
    received = smtp.messages[0]
    assert str(received.message["From"]) == "Test Shop <shop@shop.example>"
    assert received.message.get_content_type() == "multipart/alternative"
    assert smtp.connections == 1  # reused across messages and send_message calls


@pytest.mark.django_db(transaction=True)  # the senders' threads reserve send slots in the database
def test_sending_threads_each_get_a_session_of_their_own_up_to_the_connections_setting(
    store: Any, smtp: FakeSmtpServer
) -> None:
    connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none", from_addr="shop@shop.example",
                 messages_per_second=1000, connections=3)  # fmt: skip
    channel = channel_for(store, "email")
    go = threading.Barrier(4)

    def send(batch: int) -> list[Outcome]:
        go.wait()
        return outcomes(channel.send_message([envelope(10 * batch + n) for n in range(5)]))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, range(4)))
    assert results == [[Outcome.SENT] * 5] * 4
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(
        f"customer{10 * b + n}@example.com" for b in range(4) for n in range(5)
    )
    assert smtp.connections == 3  # four threads, three sessions: one waited for a free one
    channel.send_message([envelope(99)])
    assert smtp.connections == 3  # kept open for the next batch


def test_marketing_mail_carries_one_click_unsubscribe_and_receipts_do_not(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection
) -> None:
    link = "https://loop.example/u/token-1"
    results = channel_for(store, "email").send_message(
        [envelope(1, marketing=True, unsubscribe_url=link), envelope(2, unsubscribe_url=link),
         envelope(3, marketing=True, unsubscribe_url="http://insecure.example/u/x"), envelope(4, marketing=True)]
    )  # fmt: skip
    assert outcomes(results) == [Outcome.SENT, Outcome.SENT, Outcome.FAILED, Outcome.FAILED]
    assert "https" in results[2].error
    assert "https" in results[3].error
    marketing, receipt = smtp.messages  # the two invalid ones never reached the relay
    assert marketing.message["List-Unsubscribe"] == f"<{link}>"
    assert marketing.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert receipt.message["List-Unsubscribe"] is None


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"reject_recipients": {"customer1@example.com": (550, "5.1.1 user unknown")}}, Outcome.UNDELIVERABLE),
        ({"reject_recipients": {"customer1@example.com": (550, "5.7.1 refused by policy")}}, Outcome.FAILED),
        ({"reject_recipients": {"customer1@example.com": (552, "5.2.2 mailbox full")}}, Outcome.FAILED),
        ({"fail_next": 1, "fail_stage": "data"}, Outcome.RETRY),
        ({"fail_next": 1, "fail_stage": "rcpt"}, Outcome.RETRY),
        ({"disconnect_next": 1, "disconnect_after_accept": True}, Outcome.UNKNOWN),
    ],
)
def test_outcomes_follow_the_relays_answer(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection, fault: dict[str, Any], expected: Outcome
) -> None:
    for name, value in fault.items():
        setattr(smtp, name, value)
    [result] = channel_for(store, "email").send_message([envelope(1)])
    assert result.outcome == expected
    assert "customer1@example.com" not in result.error  # addresses are scrubbed from kept errors
    # Only the "maybe delivered" case reached the relay's queue.
    assert len(smtp.messages) == (1 if expected == Outcome.UNKNOWN else 0)


def test_a_throttling_reply_is_retried_with_the_relays_back_off(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection
) -> None:
    smtp.fail_next, smtp.fail_stage, smtp.fail_reply = 1, "rcpt", (454, "4.7.0 Throttling failure: rate exceeded")
    [result] = channel_for(store, "email").send_message([envelope(1)])
    assert (result.outcome, result.retry_after) == (Outcome.RETRY, 60.0)


def test_an_unreachable_relay_retries_the_whole_batch(store: Any, smtp: FakeSmtpServer) -> None:
    smtp.stop()
    connect_smtp(store_id=store.pk, host="127.0.0.1", port=smtp.port, security="none", from_addr="shop@shop.example")
    results = channel_for(store, "email").send_message([envelope(1), envelope(2)])
    assert outcomes(results) == [Outcome.RETRY, Outcome.RETRY]
    assert results[1].error.startswith("not attempted")


def test_check_channel_proves_starttls_and_credentials(store: Any) -> None:
    with FakeSmtpServer(require_auth=True, starttls=True) as fake:
        ca_cert = fake.cert_pem.decode()
        good = connect_smtp(store_id=store.pk, host=fake.host, port=fake.port, security="starttls", username="user",
                            password="pass", from_addr="shop@shop.example", ca_cert=ca_cert)  # fmt: skip
        assert check_channel(good) == "ok"
        [result] = channel_for(store, "email").send_message([envelope(1)])
        assert result.outcome == Outcome.SENT
        assert (fake.messages[0].tls, fake.messages[0].authenticated_as) == (True, "user")
        bad = connect_smtp(store_id=store.pk, host=fake.host, port=fake.port, security="starttls", username="user",
                           password="wrong", from_addr="shop@shop.example", ca_cert=ca_cert)  # fmt: skip
        with pytest.raises(ValidationError) as info:
            check_channel(bad)
        assert info.value.code == "channel_check_failed"
        # A send with the refused credentials fails (terminal); it does not pretend to retry.
        assert outcomes(channel_for(store, "email").send_message([envelope(2)])) == [Outcome.FAILED]


# --- through the dispatcher -----------------------------------------------------------------------


def queue_receipt(dispatcher: MessageDispatcher, store: Any, contact: Contact, key: str) -> Message:
    repo = TemplateRepository()
    version = repo.save_template(
        store, "receipt", "email", subject="Order", body_text="Thanks {{ contact.first_name }}"
    )
    repo.publish(version)
    return dispatcher.queue_message(store=store, contact=contact, channel="email", purpose="transactional",
                                    template=version, dedupe_key=key)  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_mailbox_that_does_not_exist_is_suppressed_and_never_tried_again(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection
) -> None:
    contact = Contact.objects.create(store=store, email="gone@example.com", first_name="Gus")
    smtp.reject_recipients["gone@example.com"] = (550, "5.1.1 <gone@example.com>: user unknown")
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True):
        queue_receipt(dispatcher, store, contact, "order-1")
        assert dispatcher.process_queue() == Counter({"undeliverable": 1})
        assert (
            MessagingConsentManager().has_consent(contact, "email", "transactional").reason == "suppressed:hard_bounce"
        )
        queue_receipt(dispatcher, store, contact, "order-2")
        assert dispatcher.process_queue() == Counter({"suppressed": 1})
    assert smtp.messages == []
    assert Message.objects.get(dedupe_key="order-1").reason == "undeliverable"


@pytest.mark.django_db(transaction=True)
def test_mail_the_relay_may_have_queued_is_unknown_and_never_resent(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection
) -> None:
    contact = Contact.objects.create(store=store, email="ann@example.com", first_name="Ann")
    smtp.disconnect_next, smtp.disconnect_after_accept = 1, True
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True) as clock:
        message = queue_receipt(dispatcher, store, contact, "order-1")
        assert dispatcher.process_queue() == Counter({"unknown": 1})
        clock.shift(dt.timedelta(days=1))
        assert dispatcher.process_queue() == Counter()
    assert smtp.count_by_message_id() == {f"<sl-{message.idempotency_key}@shop.example>": 1}
    assert Message.objects.get().status == "unknown"


@pytest.mark.django_db(transaction=True)
def test_a_temporary_refusal_is_retried_later_and_delivered_once(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection
) -> None:
    contact = Contact.objects.create(store=store, email="ann@example.com", first_name="Ann")
    smtp.fail_next = 1  # 451 after the content: refused, not kept
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True) as clock:
        queue_receipt(dispatcher, store, contact, "order-1")
        assert dispatcher.process_queue() == Counter({"retry": 1})
        assert Message.objects.get().status == "queued"
        clock.shift(dt.timedelta(hours=1))
        assert dispatcher.process_queue() == Counter({"sent": 1})
    message = Message.objects.get()
    assert (message.status, message.attempts) == ("sent", 2)
    assert smtp.count_by_message_id() == {message.provider_message_id: 1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("template_shows_it", [False, True])
def test_every_marketing_mail_links_the_preference_center(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection, settings: Any, template_shows_it: bool
) -> None:
    """A marketing template that does not show ``{{ preferences_url }}`` gets a footer with it in
    its text and HTML parts (HTML: before ``</body>``); one that shows it is sent as written. The
    link opens the recipient's preference center; a receipt gets no footer."""
    settings.PUBLIC_URL = "https://loop.example/u/shop"  # a public URL with "/u/" in it
    contact = Contact.objects.create(store=store, email="ann@example.com", first_name="Ann")
    MessagingConsentManager().grant_consent(contact, "email", "marketing", source="checkout")
    shown = " Your settings: {{ preferences_url }}" if template_shows_it else ""
    repo = TemplateRepository()
    news = repo.save_template(store, "news", "email", subject="News", body_text=f"Hello!{shown}",
                              body_html=f"<html><body><p>Hello!{shown}</p></body></html>")  # fmt: skip
    repo.publish(news)
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True):
        dispatcher.queue_message(store=store, contact=contact, channel="email", purpose="marketing", template=news,
                                 dedupe_key="news-1")  # fmt: skip
        queue_receipt(dispatcher, store, contact, "order-1")
        assert dispatcher.process_queue() == Counter({"sent": 2})
    news_mail, receipt = sorted(smtp.messages, key=lambda m: str(m.message["Subject"]) == "Order")
    unsubscribe = str(news_mail.message["List-Unsubscribe"]).strip("<>")
    preferences = unsubscribe.replace("https://loop.example/u/shop/u/", "https://loop.example/u/shop/preferences/")
    assert preferences != unsubscribe
    text = news_mail.message.get_body(("plain",)).get_content()
    html = news_mail.message.get_body(("html",)).get_content()
    assert (text.count(preferences), html.count(preferences)) == (1, 1)
    assert html.rstrip().endswith("</body></html>")
    assert ("Manage your e-mail preferences" in text) is not template_shows_it
    assert "preferences" not in receipt.message.get_body(("plain",)).get_content()
    with time_machine.travel(NOON, tick=True):  # the link's signature is dated; it expires
        page = Client().get(urlsplit(preferences).path.removeprefix("/u/shop"))  # a proxy strips the prefix
    assert (page.status_code, "<h1>Your preferences</h1>" in page.content.decode()) == (200, True)


@pytest.mark.django_db(transaction=True)
def test_the_footer_speaks_the_templates_language(
    store: Any, smtp: FakeSmtpServer, connection: MessagingConnection, settings: Any
) -> None:
    """A German marketing template gets the footer in German, links and all; the English one beside
    it in English."""
    settings.PUBLIC_URL = "https://loop.example"
    contact = Contact.objects.create(store=store, email="anna@example.de", first_name="Anna")
    MessagingConsentManager().grant_consent(contact, "email", "marketing", source="checkout")
    repo = TemplateRepository()
    dispatcher = MessageDispatcher(channel_for)
    for locale in ("de-DE", "en"):
        news = repo.save_template(store, "news", "email", locale=locale, subject=f"News {locale}", body_text="Hallo!",
                                  body_html="<html><body><p>Hallo!</p></body></html>")  # fmt: skip
        repo.publish(news)
        with time_machine.travel(NOON + dt.timedelta(days=1 if locale == "en" else 0), tick=True):  # past the cap
            dispatcher.queue_message(store=store, contact=contact, channel="email", purpose="marketing",
                                     template=news, dedupe_key=f"news-{locale}")  # fmt: skip
            assert dispatcher.process_queue() == Counter({"sent": 1})
    mails = {str(m.message["Subject"]): m.message for m in smtp.messages}
    german, english = mails["News de-DE"], mails["News en"]
    unsubscribe = str(german["List-Unsubscribe"]).strip("<>")
    preferences = unsubscribe.replace("/u/", "/preferences/")
    text = german.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = german.get_body(("html",)).get_content()
    assert text.endswith(f"--\nE-Mail-Einstellungen verwalten oder abmelden: {preferences}\n")
    assert (
        f'<a href="{preferences}">E-Mail-Einstellungen verwalten</a> oder <a href="{unsubscribe}">abmelden</a>.</p>'
        in html
    )
    assert "Manage your e-mail preferences" not in text + html
    assert "Manage your e-mail preferences or unsubscribe: " in english.get_body(("plain",)).get_content()


def test_footer_words_fall_back_from_the_locale_to_its_language_to_english() -> None:
    assert footer_words("pt_PT")[0] == "Gerir as suas preferências de e-mail"
    assert footer_words("pt-BR")[0] == "Gerencie suas preferências de e-mail"
    assert footer_words(" DE ")[2] == "abmelden"
    assert footer_words("ja") == footer_words("en") == ("Manage your e-mail preferences", "or", "unsubscribe")
    assert footer_words("") == footer_words("en")
