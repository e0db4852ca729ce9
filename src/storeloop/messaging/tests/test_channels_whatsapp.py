"""WhatsAppChannel against the real fake Cloud API on loopback: window, templates, outcomes.

``TemplateEnvelope`` is ``Envelope`` with the two fields proposed for it (``wa_template_name``,
``wa_language``); the adapter reads them with ``getattr`` until ``Envelope`` has them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.integrations.whatsapp.fake import FakeWhatsApp
from storeloop.messaging.channels.base import Envelope, Outcome
from storeloop.messaging.channels.connections import check_channel, connect_whatsapp
from storeloop.messaging.channels.factory import channel_for, close_channels
from storeloop.messaging.channels.whatsapp import WINDOW_CLOSED
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.inbound.window import record_inbound
from storeloop.messaging.models import MessagingConnection
from storeloop.messaging.templates import TemplateRepository
from storeloop.messaging.templating import Rendered

pytestmark = pytest.mark.django_db
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
ANN = "+4915112345601"
BOB = "+4915112345602"
TEMPLATES: dict[str, tuple[str, int] | tuple[str, int, str]] = {
    "order_update": ("en_US", 2),
    "spring_sale": ("en_US", 0, "MARKETING"),
}


@dataclass(frozen=True)
class TemplateEnvelope(Envelope):
    wa_template_name: str = ""
    wa_language: str = ""


@pytest.fixture
def wa() -> Iterator[FakeWhatsApp]:
    with FakeWhatsApp(templates=TEMPLATES, seed=5) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_channels() -> Iterator[None]:
    yield
    close_channels()


@pytest.fixture
def connection(store: Any, wa: FakeWhatsApp) -> MessagingConnection:
    return connect_whatsapp(store_id=store.pk, access_token=wa.access_token, phone_number_id=wa.phone_number_id,
                            base_url=wa.url, messages_per_second=1000)  # fmt: skip


def envelope(n: int, to: str = ANN, *, window_open: bool = True, template: str = "", marketing: bool = False,
             text: str = "Your order shipped", params: tuple[str, ...] = ("#1042", "Friday")) -> Envelope:  # fmt: skip
    rendered = Rendered(subject="", text=text, html="", wa_parameters=params)
    return TemplateEnvelope(message_id=n, idempotency_key=str(uuid.UUID(int=n)), to=to, rendered=rendered,
                            marketing=marketing, window_open=window_open, wa_template_name=template,
                            wa_language="en_US" if template else "")  # fmt: skip


def outcomes(results: list[Any]) -> list[Outcome]:
    return [r.outcome for r in results]


def test_inside_the_window_free_text_goes_with_our_key_as_callback_data(
    store: Any, wa: FakeWhatsApp, connection: MessagingConnection
) -> None:
    wa.simulate_inbound(ANN, "where is my parcel?")
    [result] = channel_for(store, "whatsapp").send_message([envelope(1, template="order_update")])
    [sent] = wa.messages
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, sent.wamid)
    assert (sent.type, sent.text, sent.callback_data) == ("text", "Your order shipped", str(uuid.UUID(int=1)))


def test_a_closed_window_falls_back_to_the_approved_template(
    store: Any, wa: FakeWhatsApp, connection: MessagingConnection
) -> None:
    # window_open=True is what the dispatcher says today; Meta refuses the text (131047), nothing is sent,
    # and the template goes. With window_open=False the template goes at once.
    results = channel_for(store, "whatsapp").send_message(
        [envelope(1, template="order_update"), envelope(2, to=BOB, window_open=False, template="order_update")]
    )
    assert outcomes(results) == [Outcome.SENT, Outcome.SENT]
    sent = [(m.type, m.template, m.parameters) for m in wa.messages]
    assert sent == [("template", "order_update", ("#1042", "Friday"))] * 2
    assert len([r for r in wa.requests if r.method == "POST"]) == 3


def test_no_window_and_no_template_fails_with_a_clear_reason(
    store: Any, wa: FakeWhatsApp, connection: MessagingConnection
) -> None:
    results = channel_for(store, "whatsapp").send_message([envelope(1), envelope(2, window_open=False)])
    assert outcomes(results) == [Outcome.FAILED, Outcome.FAILED]
    assert all(r.error.startswith(WINDOW_CLOSED) for r in results)
    assert wa.messages == []
    assert len(wa.requests) == 1  # the second was known to be hopeless without a request


def test_a_marketing_opt_out_is_opted_out_only_for_marketing(store: Any) -> None:
    # This fake blocks every send to an opted-out number, so the receipt is refused too: it fails, but
    # must not withdraw consent (Meta's 131050 is about marketing only).
    with FakeWhatsApp(templates=TEMPLATES, opted_out=[ANN]) as fake:
        connect_whatsapp(store_id=store.pk, access_token=fake.access_token, phone_number_id=fake.phone_number_id,
                         base_url=fake.url)  # fmt: skip
        results = channel_for(store, "whatsapp").send_message(
            [envelope(1, template="spring_sale", params=(), marketing=True, window_open=False),
             envelope(2, template="order_update", window_open=False)]
        )  # fmt: skip
    assert outcomes(results) == [Outcome.OPTED_OUT, Outcome.FAILED]


def test_an_answer_lost_after_acceptance_is_unknown_and_the_rest_waits(
    store: Any, wa: FakeWhatsApp, connection: MessagingConnection
) -> None:
    wa.faults.accept_then_drop = 1
    results = channel_for(store, "whatsapp").send_message(
        [envelope(1, window_open=False, template="order_update"), envelope(2, to=BOB, template="order_update")]
    )
    assert outcomes(results) == [Outcome.UNKNOWN, Outcome.RETRY]
    assert len(wa.messages) == 1  # accepted once, never again by the client


def test_an_account_rate_limit_retries_the_batch_later(
    store: Any, wa: FakeWhatsApp, connection: MessagingConnection
) -> None:
    wa.faults.update({"fail_next": 1, "fail_next_code": 80007})  # WABA limit: Meta asks for minutes
    results = channel_for(store, "whatsapp").send_message(
        [envelope(1, window_open=False, template="order_update"), envelope(2, to=BOB, template="order_update")]
    )
    assert outcomes(results) == [Outcome.RETRY, Outcome.RETRY]
    assert results[0].retry_after == 60.0
    assert wa.messages == []


def test_check_channel(store: Any, wa: FakeWhatsApp, connection: MessagingConnection) -> None:
    assert check_channel(connection) == "ok"
    wa.expired_tokens.add(wa.access_token)
    with pytest.raises(ValidationError) as info:
        check_channel(connection)
    assert info.value.code == "channel_check_failed"


@pytest.mark.django_db(transaction=True)
def test_a_marketing_opt_out_through_the_dispatcher_withdraws_consent(store: Any) -> None:
    contact = Contact.objects.create(store=store, phone=ANN, first_name="Ann", country="DE")
    gate = MessagingConsentManager()
    repo = TemplateRepository()
    with FakeWhatsApp(templates=TEMPLATES, opted_out=[ANN]) as fake, time_machine.travel(NOON, tick=True):
        connect_whatsapp(store_id=store.pk, access_token=fake.access_token, phone_number_id=fake.phone_number_id,
                         base_url=fake.url)  # fmt: skip
        gate.grant_consent(contact, "whatsapp", "marketing", source="checkout")
        record_inbound(store.pk, ANN, timezone.now() - dt.timedelta(hours=1))  # she wrote: free text may go
        version = repo.save_template(store, "wa-news", "whatsapp", body_text="News for {{ contact.first_name }}")
        repo.publish(version)
        dispatcher = MessageDispatcher(channel_for)
        dispatcher.queue_message(store=store, contact=contact, channel="whatsapp", purpose="marketing",
                                 template=version, dedupe_key="wa-1")  # fmt: skip
        assert dispatcher.process_queue() == Counter({"opted_out": 1})
        assert gate.has_consent(contact, "whatsapp", "marketing").reason == "withdrawn"
        assert fake.messages == []
