"""MessagingConnection services and the channel factory: validation, secrets at rest, caching, rates."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError
from django.db import connection as db

from storeloop.core.errors import NotFound, ValidationError
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.messaging.channels import factory
from storeloop.messaging.channels.base import Envelope, Outcome
from storeloop.messaging.channels.connections import connect_smtp, connect_twilio, connect_whatsapp
from storeloop.messaging.channels.factory import ChannelNotConfigured, channel_for, close_channels, rate_limiter
from storeloop.messaging.channels.sms import SmsChannel
from storeloop.messaging.models import MessagingConnection
from storeloop.messaging.templating import Rendered

pytestmark = pytest.mark.django_db
SID = "AC" + "a" * 32


@pytest.fixture(autouse=True)
def _fresh_channels() -> Iterator[None]:
    yield
    close_channels()


def smtp_args(**overrides: Any) -> dict[str, Any]:
    return {"host": "smtp.example.com", "from_addr": "shop@shop.example", **overrides}


def test_secrets_are_encrypted_at_rest_and_settings_hold_no_secret(store: Any) -> None:
    saved = connect_smtp(store_id=store.pk, **smtp_args(username="mailer", password="s3cret-pw", from_name="Shop"))
    with db.cursor() as cursor:
        cursor.execute("SELECT credentials FROM messaging_messagingconnection WHERE id = %s", [saved.pk])
        raw = cursor.fetchone()[0]
    assert "s3cret-pw" not in raw
    assert "mailer" not in raw
    loaded = MessagingConnection.objects.get()
    assert factory.credentials_of(loaded) == {"username": "mailer", "password": "s3cret-pw"}
    assert "s3cret-pw" not in str(loaded.settings)
    assert loaded.settings == {"host": "smtp.example.com", "port": 587, "security": "starttls",
                               "from_addr": "shop@shop.example", "from_name": "Shop", "connections": 2}  # fmt: skip
    assert (loaded.provider, loaded.channel, loaded.messages_per_second) == ("smtp", "email", 10.0)


def test_connecting_again_replaces_the_channels_connection(store: Any) -> None:
    connect_whatsapp(store_id=store.pk, access_token="t1", phone_number_id="123")
    connect_whatsapp(store_id=store.pk, access_token="t2", phone_number_id="456", messages_per_second=20)
    only = MessagingConnection.objects.get()
    assert (only.settings["phone_number_id"], only.messages_per_second) == ("456", 20.0)
    assert factory.credentials_of(only) == {"access_token": "t2"}


@pytest.mark.parametrize(
    ("connect", "kwargs", "code"),
    [
        (connect_smtp, smtp_args(port=0), "invalid_port"),
        (connect_smtp, smtp_args(host="smtp example.com"), "invalid_host"),
        (connect_smtp, smtp_args(security="ssl"), "invalid_security"),
        (connect_smtp, smtp_args(security="none", username="u", password="p"), "insecure_smtp"),
        (connect_smtp, smtp_args(password="p"), "missing_username"),
        (connect_smtp, smtp_args(from_addr=""), "missing_address"),
        (connect_smtp, smtp_args(from_addr="not-an-address"), "invalid_address"),
        (connect_smtp, smtp_args(reply_to="a@b@c"), "invalid_address"),
        (connect_smtp, smtp_args(from_name="Shop\r\nBcc: x@y.z"), "invalid_from_name"),
        (connect_smtp, smtp_args(message_id_domain="not a domain"), "invalid_message_id_domain"),
        (connect_smtp, smtp_args(ca_cert="not pem"), "invalid_ca_cert"),
        (connect_smtp, smtp_args(messages_per_second=0), "invalid_rate"),
        (connect_twilio, {"account_sid": "AC123", "auth_token": "t", "from_number": "+15005550006"},
         "invalid_account_sid"),
        (connect_twilio, {"account_sid": SID, "auth_token": " ", "from_number": "+15005550006"}, "missing_token"),
        (connect_twilio, {"account_sid": SID, "auth_token": "t"}, "missing_sender"),
        (connect_twilio, {"account_sid": SID, "auth_token": "t", "messaging_service_sid": "MG1"},
         "invalid_messaging_service_sid"),
        (connect_twilio, {"account_sid": SID, "auth_token": "t", "from_number": "12ab!"}, "invalid_from_number"),
        (connect_twilio, {"account_sid": SID, "auth_token": "t", "from_number": "+15005550006",
                          "status_callback": "ftp://x"}, "invalid_url"),
        (connect_smtp, smtp_args(connections=0), "invalid_connections"),
        (connect_smtp, smtp_args(connections=11), "invalid_connections"),
        (connect_whatsapp, {"access_token": "", "phone_number_id": "1"}, "missing_token"),
        (connect_whatsapp, {"access_token": "t", "phone_number_id": "+1555"}, "invalid_phone_number_id"),
        (connect_whatsapp, {"access_token": "t", "phone_number_id": "1", "api_version": "21"}, "invalid_api_version"),
        (connect_whatsapp, {"access_token": "t", "phone_number_id": "1", "messages_per_second": 20_000},
         "invalid_rate"),
    ],
)  # fmt: skip
def test_wrong_input_is_refused_with_a_code(store: Any, connect: Any, kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(ValidationError) as info:
        connect(store_id=store.pk, **kwargs)
    assert info.value.code == code
    assert not MessagingConnection.objects.exists()


def test_an_unknown_store_is_not_found(db: None) -> None:
    with pytest.raises(NotFound) as info:
        connect_whatsapp(store_id=999_999, access_token="t", phone_number_id="1")
    assert info.value.code == "store_not_found"


def test_a_provider_only_serves_its_own_channel(store: Any) -> None:
    with pytest.raises(IntegrityError):
        MessagingConnection.objects.create(store=store, channel="sms", provider="smtp", credentials="{}")


def test_a_missing_or_inactive_connection_is_channel_not_configured(store: Any) -> None:
    with pytest.raises(ChannelNotConfigured) as info:
        channel_for(store, "email")
    assert (info.value.code, info.value.status_code) == ("channel_not_configured", 404)
    connect_smtp(store_id=store.pk, **smtp_args())
    assert channel_for(store, "email").name == "email"
    MessagingConnection.objects.update(active=False)
    with pytest.raises(ChannelNotConfigured):
        channel_for(store, "email")


def test_channels_are_cached_per_connection_and_rebuilt_after_a_reconnect(
    store: Any, other_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_twilio(store_id=store.pk, account_sid=SID, auth_token="t1", from_number="+15005550006")
    connect_twilio(store_id=other_store.pk, account_sid=SID, auth_token="t1", from_number="+15005550006")
    first = channel_for(store, "sms")
    assert isinstance(first, SmsChannel)
    assert channel_for(store, "sms") is first
    assert channel_for(other_store, "sms") is not first  # one client (and limiter) per connection
    connect_twilio(store_id=store.pk, account_sid=SID, auth_token="t2", from_number="+15005550006")
    second = channel_for(store, "sms")
    assert isinstance(second, SmsChannel)
    assert second is not first
    assert second.client.limiter is first.client.limiter  # same rate: the limiter survives the rebuild
    assert not first.client.http.is_closed  # a batch in another thread may still be using it
    monkeypatch.setattr(factory, "RETIRE_AFTER", 0.0)
    channel_for(store, "sms")
    assert first.client.http.is_closed


@pytest.mark.parametrize(
    ("rate", "interval", "prefetch"), [(10, 0.1, 1), (0.5, 2.0, 1), (2.5, 0.4, 1), (1000, 0.001, 50)]
)
def test_rate_limiter_paces_the_configured_rate_per_store_and_channel(
    rate: float, interval: float, prefetch: int
) -> None:
    limiter = rate_limiter(7, "sms", rate)
    assert (limiter.key, limiter.interval, limiter.prefetch) == ("messaging:7:sms", pytest.approx(interval), prefetch)


def test_the_per_connection_rate_is_applied_across_batches(store: Any) -> None:
    with FakeSmtpServer() as fake:
        connect_smtp(store_id=store.pk, host=fake.host, port=fake.port, security="none",
                     from_addr="shop@shop.example", messages_per_second=4)  # fmt: skip
        channel = channel_for(store, "email")
        envelopes = [
            Envelope(message_id=n, idempotency_key=str(uuid.UUID(int=n)), to=f"c{n}@example.com",
                     rendered=Rendered(subject="Hi", text="Hi", html=""), marketing=False)
            for n in range(6)
        ]  # fmt: skip
        started = time.monotonic()
        results = channel.send_message(envelopes[:3]) + channel_for(store, "email").send_message(envelopes[3:])
        elapsed = time.monotonic() - started
    assert [r.outcome for r in results] == [Outcome.SENT] * 6
    assert elapsed >= 0.9  # 4 in the first second, the 5th and 6th only once it has passed


def test_the_twilio_settings_reach_the_client(store: Any) -> None:
    with FakeTwilio() as twilio:
        connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                       messaging_service_sid=twilio.messaging_service_sid, base_url=twilio.url + "/")  # fmt: skip
        channel = channel_for(store, "sms")
        assert isinstance(channel, SmsChannel)
        assert (channel.client.base_url, channel.client.messaging_service_sid) == (
            twilio.url,
            twilio.messaging_service_sid,
        )
        channel.test_connection()


def test_a_connection_edited_into_nonsense_is_misconfigured_not_a_crash(store: Any) -> None:
    connect_whatsapp(store_id=store.pk, access_token="t", phone_number_id="123")
    MessagingConnection.objects.update(settings={"api_version": "v21.0"})  # phone_number_id lost
    with pytest.raises(ValidationError) as info:
        channel_for(store, "whatsapp")
    assert info.value.code == "channel_misconfigured"
    assert "phone_number_id" in info.value.message
