"""Fixtures for campaign tests: contacts with consent, published templates, the fake providers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from storeloop.consent.models import ConsentEvent, ConsentState
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.messaging.templates import TemplateRepository

gate = MessagingConsentManager()


def bulk_audience(store: Any, size: int) -> list[Contact]:
    """``size`` contacts with marketing e-mail consent, inserted in bulk (setup, not the subject)."""
    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        Contact(store=store, email=f"k{i:05}@example.com", first_name=f"K{i}") for i in range(size)
    )
    events = ConsentEvent.objects.bulk_create(
        ConsentEvent(store=store, contact=c, channel="email", purpose="marketing", action="grant", source="checkout",
                     occurred_at=now) for c in contacts
    )  # fmt: skip
    ConsentState.objects.bulk_create(
        ConsentState(store=store, contact=e.contact, channel="email", purpose="marketing", status="granted",
                     lawful_basis="consent", last_event=e, updated_at=now) for e in events
    )  # fmt: skip
    return contacts


def publish(store: Any, key: str, channel: str, **fields: Any) -> Any:
    repo = TemplateRepository()
    version = repo.save_template(store, key, channel, **fields)
    repo.publish(version)
    return version


def person(store: Any, name: str, *, country: str = "", phone: str = "", consent: tuple[str, ...] = ()) -> Contact:
    """A contact ``name@example.com`` with marketing consent on the given channels."""
    contact = Contact.objects.create(
        store=store, email=f"{name}@example.com", first_name=name.title(), country=country, phone=phone
    )
    for channel in consent:
        gate.grant_consent(contact, channel, "marketing", source="checkout")
    return contact


@pytest.fixture
def news(store: Any) -> Any:
    return publish(store, "news", "email", subject="News for {{ contact.first_name }}", body_text="Hello!")


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as fake:
        yield fake


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(seed=5) as fake:
        yield fake


@pytest.fixture
def channels_closed(settings: Any) -> Iterator[None]:
    """Channel clients are cached per process: close them after each test that sends."""
    from storeloop.messaging.channels.factory import close_channels

    settings.PUBLIC_URL = "https://loop.example"
    yield
    close_channels()
