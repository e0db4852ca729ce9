"""MessageDispatcher rules through its public methods, with a recording channel (the port)."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from typing import Any

import pytest
import time_machine

from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import NotFound, ValidationError
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.channels.base import Envelope, Outcome, SendResult
from storeloop.messaging.channels.connections import set_marketing_policy
from storeloop.messaging.dispatcher import (
    CLAIM,
    LOST_BEFORE_CALL,
    LOST_IN_CALL,
    MessageDispatcher,
    default_context,
    reap_stuck_sends,
)
from storeloop.messaging.handover import HANDOVER_GROUP
from storeloop.messaging.models import HandOver, Message, MessagingConnection
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


class RecordingChannel:
    """Records every envelope it is asked to send; answers with scripted outcomes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Envelope] = []
        self.script: list[Outcome] = []

    def validate_message(self, envelope: Envelope) -> str | None:
        return None

    def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
        out = []
        for envelope in envelopes:
            outcome = self.script.pop(0) if self.script else Outcome.SENT
            if outcome == Outcome.SENT:
                self.sent.append(envelope)
            out.append(SendResult(envelope.message_id, outcome, provider_message_id=f"p-{envelope.message_id}",
                                  error="" if outcome == Outcome.SENT else "provider said no"))  # fmt: skip
        return out

    def test_connection(self) -> None:
        return None


@pytest.fixture
def channels() -> dict[str, RecordingChannel]:
    return {name: RecordingChannel(name) for name in ("email", "sms", "whatsapp")}


@pytest.fixture
def dispatcher(channels: dict[str, RecordingChannel]) -> MessageDispatcher:
    return MessageDispatcher(lambda store, channel: channels[channel])


@pytest.fixture
def contact(store: Any) -> Contact:
    return Contact.objects.create(store=store, email="ann@example.com", phone="+4930123456", first_name="Ann",
                                  country="DE")  # fmt: skip


def template(store: Any, channel: str = "email") -> Any:
    repo = TemplateRepository()
    if channel == "email":
        version = repo.save_template(store, "news", "email", subject="Hi {{ contact.first_name }}", body_text="News")
    else:
        version = repo.save_template(store, f"news-{channel}", channel, body_text="News for {{ contact.first_name }}")
    repo.publish(version)
    return version


def queue(dispatcher: MessageDispatcher, store: Any, contact: Contact, purpose: str, key: str, channel: str = "email",
          version: Any = None) -> Message:  # fmt: skip
    return dispatcher.queue_message(store=store, contact=contact, channel=channel, purpose=purpose,
                                    template=version or template(store, channel), dedupe_key=key)  # fmt: skip


def journal() -> tuple[set[int], set[int]]:
    """Ids named in the hand-over journal: (handed over, accepted)."""
    entries = list(HandOver.objects.values_list("handed", "accepted"))
    return {pk for handed, _ in entries for pk in handed}, {int(pk) for _, accepted in entries for pk in accepted}


def grant(contact: Contact, channel: str = "email") -> None:
    MessagingConsentManager().grant_consent(contact, channel, "marketing", source="checkout")


@time_machine.travel(NOON, tick=False)
def test_a_message_is_sent_once_even_if_queued_and_processed_twice(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    first = queue(dispatcher, store, contact, "transactional", "order-1-confirmation")
    again = queue(dispatcher, store, contact, "transactional", "order-1-confirmation")
    assert first.pk == again.pk
    assert dispatcher.process_queue() == Counter({"sent": 1})
    assert dispatcher.process_queue() == Counter()
    assert [e.rendered.subject for e in channels["email"].sent] == ["Hi Ann"]
    message = Message.objects.get()
    assert (message.status, message.provider_message_id, message.attempts) == ("sent", f"p-{message.pk}", 1)


@time_machine.travel(NOON, tick=False)
def test_consent_is_checked_at_send_time(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    grant(contact)
    queue(dispatcher, store, contact, "marketing", "campaign-1")
    MessagingConsentManager().withdraw_consent(contact, "email", "marketing", source="preference_center")
    assert dispatcher.process_queue() == Counter({"suppressed": 1})
    assert channels["email"].sent == []
    assert Message.objects.get().reason == "withdrawn"


@time_machine.travel(NOON, tick=False)
def test_transactional_goes_before_marketing(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact, make_store: Any
) -> None:
    grant(contact)
    queue(dispatcher, store, contact, "marketing", "m1")
    queue(dispatcher, store, contact, "transactional", "t1")
    dispatcher.process_queue(batch_size=1)
    assert Message.objects.get(dedupe_key="t1").status == "sent"
    assert Message.objects.get(dedupe_key="m1").status == "queued"


@time_machine.travel(NOON, tick=False)
def test_frequency_cap_delays_the_second_marketing_email(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    grant(contact)
    version = template(store)
    queue(dispatcher, store, contact, "marketing", "m1", version=version)
    queue(dispatcher, store, contact, "marketing", "m2", version=version)
    counts = dispatcher.process_queue()
    assert counts == Counter({"sent": 1, "delayed": 1})
    delayed = Message.objects.get(status="queued")
    assert delayed.reason == "frequency_cap"
    dispatcher.process_queue()
    assert len(channels["email"].sent) == 1
    with time_machine.travel(NOON + dt.timedelta(hours=16, minutes=1), tick=False):
        assert dispatcher.process_queue() == Counter({"sent": 1})


def test_quiet_hours_in_the_recipients_zone_delay_sms_marketing(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    grant(contact, "sms")
    with time_machine.travel(dt.datetime(2026, 6, 1, 20, 30, tzinfo=dt.UTC), tick=False):  # 22:30 in Berlin
        queue(dispatcher, store, contact, "marketing", "sms-1", channel="sms")
        assert dispatcher.process_queue() == Counter({"delayed": 1})
        message = Message.objects.get()
        assert message.reason == "quiet_hours"
        assert message.not_before == dt.datetime(2026, 6, 2, 6, 0, tzinfo=dt.UTC)  # 08:00 Berlin
        queue(dispatcher, store, contact, "transactional", "sms-cod", channel="sms")
        assert dispatcher.process_queue() == Counter({"sent": 1})  # transactional is not held back
    with time_machine.travel(dt.datetime(2026, 6, 2, 6, 1, tzinfo=dt.UTC), tick=False):
        assert dispatcher.process_queue() == Counter({"sent": 1})


@time_machine.travel(NOON, tick=False)
def test_transient_failures_retry_and_terminal_ones_are_recorded_once(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    channels["email"].script = [Outcome.RETRY]
    queue(dispatcher, store, contact, "transactional", "t1")
    assert dispatcher.process_queue() == Counter({"retry": 1})
    message = Message.objects.get()
    assert (message.status, message.attempts) == ("queued", 1)
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        assert dispatcher.process_queue() == Counter({"sent": 1})
    channels["email"].script = [Outcome.FAILED]
    queue(dispatcher, store, contact, "transactional", "t2")
    assert dispatcher.process_queue() == Counter({"failed": 1})
    with time_machine.travel(NOON + dt.timedelta(days=1), tick=False):
        assert dispatcher.process_queue() == Counter()


@time_machine.travel(NOON, tick=False)
def test_provider_opt_out_withdraws_consent_and_undeliverable_suppresses(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    grant(contact, "sms")
    channels["sms"].script = [Outcome.OPTED_OUT]
    queue(dispatcher, store, contact, "marketing", "s1", channel="sms")
    dispatcher.process_queue()
    gate = MessagingConsentManager()
    assert gate.has_consent(contact, "sms", "marketing").reason == "withdrawn"
    channels["email"].script = [Outcome.UNDELIVERABLE]
    queue(dispatcher, store, contact, "transactional", "e1")
    dispatcher.process_queue()
    assert gate.has_consent(contact, "email", "transactional").reason == "suppressed:hard_bounce"


@time_machine.travel(NOON, tick=False)
def test_a_worker_lost_mid_call_never_resends(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    message = queue(dispatcher, store, contact, "transactional", "t1")
    # The attempt was recorded and the provider called, then the worker died before writing back.
    claimed = NOON - dt.timedelta(minutes=15)
    Message.objects.filter(pk=message.pk).update(status="sending", claimed_until=claimed + CLAIM, attempted_at=claimed)
    HandOver.objects.create(created_at=claimed, handed=[message.pk])  # what its sending thread left
    assert reap_stuck_sends() == 1
    assert Message.objects.values_list("status", "reason").get() == ("unknown", LOST_IN_CALL)
    assert dispatcher.process_queue() == Counter()
    assert channels["email"].sent == []


@time_machine.travel(NOON, tick=False)
def test_a_lost_worker_s_messages_are_settled_from_the_journal_it_left(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    """A send the journal lists as accepted is ``sent`` (with its provider id and time); one handed
    over without an answer is ``unknown``; ones never handed over are queued again (held or
    cancelled where their campaign stopped) and sent once by the next worker."""
    paused = Campaign.objects.create(store=store, name="paused", channel="email", state="paused")
    cancelled = Campaign.objects.create(store=store, name="cancelled", channel="email", state="cancelled")
    lost = [queue(dispatcher, store, contact, "transactional", f"t{n}") for n in range(6)]
    Message.objects.filter(pk=lost[4].pk).update(campaign_id=paused.pk)
    Message.objects.filter(pk=lost[5].pk).update(campaign_id=cancelled.pk)
    claimed = NOON - dt.timedelta(minutes=15)
    Message.objects.update(status="sending", claimed_until=claimed + CLAIM, attempted_at=claimed)
    young = queue(dispatcher, store, contact, "transactional", "young")  # its worker may still be alive
    Message.objects.filter(pk=young.pk).update(status="sending", claimed_until=NOON + dt.timedelta(minutes=4))
    accepted_at = claimed + dt.timedelta(seconds=2)
    HandOver.objects.create(created_at=claimed + dt.timedelta(seconds=1), handed=[lost[0].pk, lost[1].pk])
    HandOver.objects.create(created_at=accepted_at, handed=[lost[2].pk], accepted={str(lost[0].pk): "<a@shop>"})
    fresh = HandOver.objects.create(created_at=NOON - dt.timedelta(minutes=1), handed=[young.pk])

    assert reap_stuck_sends() == 6
    rows = {
        key: (status, reason) for key, status, reason in Message.objects.values_list("dedupe_key", "status", "reason")
    }
    assert rows == {
        "t0": ("sent", ""),
        "t1": ("unknown", LOST_IN_CALL),
        "t2": ("unknown", LOST_IN_CALL),
        "t3": ("queued", LOST_BEFORE_CALL),
        "t4": ("held", LOST_BEFORE_CALL),
        "t5": ("cancelled", "campaign cancelled"),
        "young": ("sending", ""),
    }
    sent = Message.objects.get(pk=lost[0].pk)
    assert (sent.provider_message_id, sent.sent_at, sent.attempts, sent.claimed_until) == (
        "<a@shop>",
        accepted_at,
        1,
        None,
    )
    assert Message.objects.values_list("claimed_until", "attempts").get(pk=lost[3].pk) == (None, 0)
    # Entries older than any live batch are gone (the lost worker's too); the young batch's stay.
    assert list(HandOver.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert dispatcher.process_queue() == Counter({"sent": 1})
    assert [e.message_id for e in channels["email"].sent] == [lost[3].pk]
    assert reap_stuck_sends() == 0


@time_machine.travel(NOON, tick=False)
def test_each_group_is_named_in_the_journal_before_its_provider_call(
    channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    """A sending thread goes through its part ``HANDOVER_GROUP`` messages at a time. When a group
    reaches the provider the journal names it as handed over, and the groups before it as
    accepted; the next group is named too (written while this one is sent), the rest is not."""
    seen: list[tuple[int, int, int]] = []
    recording = channels["email"]

    class Watching(RecordingChannel):
        def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
            ids = [e.message_id for e in envelopes]
            handed, accepted = journal()
            assert set(ids) <= handed
            assert set(Message.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"sending"}
            earlier = set(Message.objects.filter(pk__lt=min(ids)).values_list("pk", flat=True))
            assert accepted == earlier
            seen.append((len(ids), len(accepted), len(handed - earlier - set(ids))))
            return recording.send_message(envelopes)

    dispatcher = MessageDispatcher(lambda store, channel: Watching(channel), concurrency=1)
    version = template(store)
    for n in range(50):
        queue(dispatcher, store, contact, "transactional", f"receipt-{n}", version=version)
    assert HANDOVER_GROUP == 20
    assert dispatcher.process_queue() == Counter({"sent": 50})
    assert seen == [(20, 0, 20), (20, 20, 10), (10, 40, 0)]
    assert len(recording.sent) == 50
    assert set(Message.objects.values_list("status", "attempts")) == {("sent", 1)}
    every = set(Message.objects.values_list("pk", flat=True))
    assert journal() == (every, every)  # the last group's sends too; the reaper deletes entries later


@time_machine.travel(NOON, tick=False)
def test_a_message_taken_back_or_in_another_attempt_before_its_group_is_named_is_not_sent(
    channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    """A worker that overran its claim by minutes: the reaper queued a message of a later group
    again, and another worker is sending a second one by now (its own attempt). The overrunning
    worker sends neither and writes no outcome over them."""
    recording = channels["email"]
    taken: list[int] = []
    elsewhere = NOON + dt.timedelta(minutes=11)

    class Overrunning(RecordingChannel):
        def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
            if not taken:
                later = Message.objects.filter(status="sending").exclude(pk__in=journal()[0]).order_by("pk")
                taken.extend(later.values_list("pk", flat=True)[:2])
                Message.objects.filter(pk=taken[0]).update(status="queued", claimed_until=None)
                Message.objects.filter(pk=taken[1]).update(attempted_at=elsewhere)  # claimed and marked again
            return recording.send_message(envelopes)

    dispatcher = MessageDispatcher(lambda store, channel: Overrunning(channel), concurrency=1)
    version = template(store)
    for n in range(50):
        queue(dispatcher, store, contact, "transactional", f"receipt-{n}", version=version)
    counts = dispatcher.process_queue()
    assert counts["sent"] == 48
    assert not set(taken) & {e.message_id for e in recording.sent}
    assert Message.objects.values_list("status", "attempts").get(pk=taken[0]) == ("queued", 0)
    other = Message.objects.get(pk=taken[1])
    assert (other.status, other.attempts, other.attempted_at, other.last_error) == ("sending", 0, elsewhere, "")
    assert not set(taken) & journal()[0]
    assert dispatcher.process_queue() == Counter({"sent": 1})
    assert Counter(e.message_id for e in recording.sent) == Counter(dict.fromkeys(set(journal()[0]) - {taken[1]}, 1))


@pytest.mark.django_db(transaction=True)
def test_sending_threads_send_only_groups_named_in_a_committed_entry(store: Any, contact: Contact) -> None:
    """The threaded path (no test transaction around it): the recorder thread writes the entries,
    and each sending thread, reading through its own connection (committed rows only), finds every
    group it is asked to send named before the call; batches overlap (the next is prepared and
    sent while the last outcomes are written) and nobody gets a message twice."""
    recording = RecordingChannel("email")
    lock = threading.Lock()
    checked: list[bool] = []

    class Checking(RecordingChannel):
        def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
            named = journal()[0]
            with lock:
                checked.append({e.message_id for e in envelopes} <= named)
                return recording.send_message(envelopes)

    dispatcher = MessageDispatcher(lambda store, channel: Checking(channel), concurrency=2)
    version = template(store)
    for n in range(230):
        queue(dispatcher, store, contact, "transactional", f"receipt-{n}", version=version)
    assert dispatcher.drain(budget_seconds=60, batch_size=100) == (Counter({"sent": 230}), False)
    assert len(checked) == 14  # 3 batches, 2 parts each, groups of at most 20
    assert all(checked)
    every = set(Message.objects.values_list("pk", flat=True))
    assert Counter(e.message_id for e in recording.sent) == Counter(dict.fromkeys(every, 1))
    assert journal() == (every, every)
    assert set(Message.objects.values_list("status", "attempts")) == {("sent", 1)}


@time_machine.travel(NOON, tick=False)
def test_marketing_carries_a_working_unsubscribe_link(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    grant(contact)
    queue(dispatcher, store, contact, "marketing", "m1")
    dispatcher.process_queue()
    link = channels["email"].sent[0].unsubscribe_url
    assert "/u/" in link
    MessagingConsentManager().unsubscribe(link.rsplit("/", 1)[1])
    assert MessagingConsentManager().has_consent(contact, "email", "marketing").reason == "withdrawn"


@time_machine.travel(NOON, tick=False)
def test_templates_can_place_the_unsubscribe_link(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    grant(contact)
    repo = TemplateRepository()
    version = repo.save_template(store, "promo", "email", subject="Sale", body_text="Sale! Stop: {{ unsubscribe_url }}")
    queue(dispatcher, store, contact, "marketing", "m1", version=version)
    assert dispatcher.process_queue() == Counter({"sent": 1})
    sent = channels["email"].sent[0]
    assert sent.rendered.text == f"Sale! Stop: {sent.unsubscribe_url}"


@time_machine.travel(NOON, tick=False)
def test_a_text_signs_an_unsubscribe_link_only_when_its_template_shows_one(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    other = Contact.objects.create(store=store, phone="+4930123457", first_name="Bo", country="DE")
    grant(contact, "sms")
    grant(other, "sms")
    repo = TemplateRepository()
    plain = repo.save_template(store, "plain", "sms", body_text="Sale today")
    linked = repo.save_template(store, "linked", "sms", body_text="Sale! Opt out: {{ preferences_url }}")
    queue(dispatcher, store, contact, "marketing", "plain", channel="sms", version=plain)
    queue(dispatcher, store, other, "marketing", "linked", channel="sms", version=linked)
    assert dispatcher.process_queue() == Counter({"sent": 2})
    without, with_link = sorted(channels["sms"].sent, key=lambda e: e.rendered.text)
    assert (without.rendered.text, without.unsubscribe_url) == ("Sale today", "")
    assert "/u/" in with_link.unsubscribe_url
    assert with_link.rendered.text == "Sale! Opt out: " + with_link.unsubscribe_url.replace("/u/", "/preferences/")
    MessagingConsentManager().unsubscribe(with_link.unsubscribe_url.rsplit("/", 1)[1])
    assert MessagingConsentManager().has_consent(other, "sms", "marketing").reason == "withdrawn"


@time_machine.travel(NOON, tick=False)
def test_a_channel_that_is_not_configured_sends_nothing_and_retries_later(
    channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    from storeloop.core.errors import NotFound

    def missing(store: Any, channel: str) -> Any:
        raise NotFound("no email connection", code="channel_not_configured")

    dispatcher = MessageDispatcher(missing)
    queue(dispatcher, store, contact, "transactional", "t1")
    assert dispatcher.process_queue() == Counter({"retry": 1})
    message = Message.objects.get()
    assert (message.status, message.last_error) == ("queued", "no email connection")


@time_machine.travel(NOON, tick=False)
def test_a_batch_takes_only_what_the_send_rate_gets_out_before_its_claim_ends(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any
) -> None:
    """At 0.5 messages/s a minute's sends are 30: the rest go back to the queue, unclaimed, instead of
    waiting inside a claim they would outlive (and be reaped as 'unknown' while still being sent)."""
    from storeloop.messaging.models import MessagingConnection

    MessagingConnection.objects.create(
        store=store, channel="email", provider="smtp", credentials="{}", messages_per_second=0.5
    )
    version = template(store)
    for n in range(45):
        person = Contact.objects.create(store=store, email=f"p{n}@example.com", country="DE")
        queue(dispatcher, store, person, "transactional", f"receipt-{n}", version=version)
    counts = dispatcher.process_queue(batch_size=500)
    assert counts == Counter({"sent": 30})
    assert len(channels["email"].sent) == 30
    waiting = Message.objects.filter(status=Message.Status.QUEUED)
    assert waiting.count() == 15
    assert not waiting.filter(claimed_until__isnull=False).exists()


@time_machine.travel(NOON, tick=False)
def test_a_message_held_or_cancelled_after_the_claim_is_not_sent(
    channels: dict[str, RecordingChannel], store: Any
) -> None:
    """A campaign paused (held) or cancelled between the batch's claim and its provider call."""
    version = template(store)
    people = [Contact.objects.create(store=store, email=f"p{n}@example.com", country="DE") for n in range(3)]

    class PausingConsent(MessagingConsentManager):
        # Runs after the claim, inside the batch: the moment a pause lands in production.
        def has_consent_many(self, requests: Any, **kwargs: Any) -> Any:
            Message.objects.filter(contact=people[1]).update(status=Message.Status.HELD)
            Message.objects.filter(contact=people[2]).update(status=Message.Status.CANCELLED)
            return super().has_consent_many(requests, **kwargs)

    dispatcher = MessageDispatcher(lambda store, channel: channels[channel], consent=PausingConsent())
    for person in people:
        queue(dispatcher, store, person, "transactional", f"receipt-{person.pk}", version=version)
    assert dispatcher.process_queue() == Counter({"sent": 1})
    assert [e.to for e in channels["email"].sent] == ["p0@example.com"]
    statuses = dict(Message.objects.values_list("contact__email", "status"))
    assert statuses == {"p0@example.com": "sent", "p1@example.com": "held", "p2@example.com": "cancelled"}


@time_machine.travel(NOON, tick=False)
def test_a_message_for_a_contact_merged_away_goes_to_the_survivors_address(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any
) -> None:
    """The gate answers for the survivor, so the address must be the survivor's too: never the old
    one (here suppressed after a hard bounce)."""
    old = Contact.objects.create(store=store, email="old@example.com", country="DE")
    queue(dispatcher, store, old, "transactional", "receipt-1")
    survivor = Contact.objects.create(store=store, email="new@example.com", country="DE")
    Contact.objects.filter(pk=old.pk).update(merged_into=survivor)
    MessagingConsentManager().suppress(store.pk, "email", "old@example.com", "hard_bounce")
    assert dispatcher.process_queue() == Counter({"sent": 1})
    assert [e.to for e in channels["email"].sent] == ["new@example.com"]


@time_machine.travel(NOON, tick=False)
def test_a_pause_in_the_preference_center_holds_back_messages_already_queued(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    grant(contact)
    queue(dispatcher, store, contact, "marketing", "campaign-7")
    MessagingConsentManager().set_preferences(contact, paused_until=NOON + dt.timedelta(days=3))
    assert dispatcher.process_queue() == Counter({"suppressed": 1})
    assert channels["email"].sent == []
    assert Message.objects.get().reason == "paused"


def test_quiet_hours_follow_each_recipients_own_zone(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any
) -> None:
    """At 21:30 UTC it is 23:30 in Berlin (quiet) and 17:30 in New York (not): one waits, one goes."""
    berlin = Contact.objects.create(store=store, phone="+4930123456", first_name="Bo")
    new_york = Contact.objects.create(store=store, phone="+12125550123", first_name="Ny")
    version = template(store, "sms")
    with time_machine.travel(dt.datetime(2026, 6, 1, 21, 30, tzinfo=dt.UTC), tick=False):
        for person in (berlin, new_york):
            grant(person, "sms")
            queue(dispatcher, store, person, "marketing", f"sale-{person.pk}", channel="sms", version=version)
        assert dispatcher.process_queue() == Counter({"sent": 1, "delayed": 1})
    assert [e.to for e in channels["sms"].sent] == ["+12125550123"]
    waiting = Message.objects.get(status="queued")
    assert (waiting.contact_id, waiting.reason) == (berlin.pk, "quiet_hours")
    assert waiting.not_before == dt.datetime(2026, 6, 2, 6, 0, tzinfo=dt.UTC)  # 08:00 in Berlin


# --- the pipelined drain and caps across batches and workers -----------------------------------------


@time_machine.travel(NOON, tick=False)
def test_drain_counts_a_send_still_in_flight_against_the_cap(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    # One message per batch: the second batch is checked while the first is still with the provider.
    grant(contact)
    version = template(store)
    first = queue(dispatcher, store, contact, "marketing", "m1", version=version)
    second = queue(dispatcher, store, contact, "marketing", "m2", version=version)
    assert dispatcher.drain(budget_seconds=60, batch_size=1) == (Counter({"sent": 1, "delayed": 1}), False)
    assert [e.message_id for e in channels["email"].sent] == [first.pk]
    second.refresh_from_db()
    assert (second.status, second.reason) == ("queued", "frequency_cap")
    assert second.not_before == NOON + dt.timedelta(hours=16)


@time_machine.travel(NOON, tick=False)
def test_the_cap_is_checked_again_when_the_attempt_is_recorded(
    channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    """Another worker attempts a message to the same contact after this batch passed the cap check
    and before it recorded its attempt: this batch's message waits for the cap instead."""
    grant(contact)
    version = template(store)
    plain = MessageDispatcher(lambda store, channel: channels[channel])
    mine = queue(plain, store, contact, "marketing", "m1", version=version)
    theirs = queue(plain, store, contact, "marketing", "m2", version=version)

    def context_then_other_worker(message: Message) -> dict[str, Any]:
        Message.objects.filter(pk=theirs.pk).update(status="sending", attempted_at=NOON)
        return default_context(message)

    racing = MessageDispatcher(lambda store, channel: channels[channel], context_builder=context_then_other_worker)
    assert racing.process_queue(batch_size=1) == Counter({"delayed": 1})
    assert channels["email"].sent == []
    mine.refresh_from_db()
    assert (mine.status, mine.reason, mine.not_before, mine.attempted_at) == (
        "queued", "frequency_cap", NOON + dt.timedelta(hours=16), None,
    )  # fmt: skip


@time_machine.travel(NOON, tick=False)
def test_drain_records_the_batch_in_flight_even_when_the_next_one_fails(
    channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    version = template(store)
    sent = queue(MessageDispatcher(lambda s, c: channels[c]), store, contact, "transactional", "t1", version=version)
    failing = queue(MessageDispatcher(lambda s, c: channels[c]), store, contact, "transactional", "t2", version=version)

    def context(message: Message) -> dict[str, Any]:
        if message.pk == failing.pk:
            raise RuntimeError("context source is down")
        return default_context(message)

    dispatcher = MessageDispatcher(lambda store, channel: channels[channel], context_builder=context)
    with pytest.raises(RuntimeError, match="context source is down"):
        dispatcher.drain(budget_seconds=60, batch_size=1)
    assert [e.message_id for e in channels["email"].sent] == [sent.pk]
    assert dict(Message.objects.values_list("dedupe_key", "status")) == {"t1": "sent", "t2": "queued"}


@time_machine.travel(NOON, tick=False)
def test_drain_stops_claiming_when_its_budget_is_spent(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    queue(dispatcher, store, contact, "transactional", "t1")
    assert dispatcher.drain(budget_seconds=-1) == (Counter(), True)
    assert (channels["email"].sent, Message.objects.get().status) == ([], "queued")
    assert dispatcher.drain(budget_seconds=60) == (Counter({"sent": 1}), False)


@time_machine.travel(NOON, tick=False)
def test_drain_gives_way_between_batches_when_asked_to(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    for key in ("t1", "t2", "t3"):
        queue(dispatcher, store, contact, "transactional", key)
    asked: list[int] = []

    def give_way() -> bool:  # other work waits from the second claim on
        asked.append(len(channels["email"].sent))
        return len(asked) > 1

    assert dispatcher.drain(budget_seconds=60, batch_size=1, give_way=give_way) == (Counter({"sent": 1}), True)
    assert len(channels["email"].sent) == 1
    assert sorted(Message.objects.values_list("status", flat=True)) == ["queued", "queued", "sent"]
    assert dispatcher.drain(budget_seconds=60, batch_size=1, give_way=lambda: False) == (Counter({"sent": 2}), False)


@pytest.mark.parametrize(
    ("queues", "size", "first", "expected"),
    [
        ([[1, 2, 3], [10, 20], []], 4, 0, [1, 2, 10, 20]),
        ([list(range(1, 11)), [10, 20]], 6, 0, [1, 2, 3, 4, 10, 20]),  # the short queue's rest goes to the other
        ([[1, 2], [10, 20], [7]], 5, 0, [1, 2, 10, 20, 7]),
        ([[1, 2], [10, 20], [7]], 4, 0, [1, 2, 10, 7]),  # the odd one from queue 0 on: 0, 1, then 2
        ([[1, 2], [10, 20], [7]], 4, 1, [1, 10, 20, 7]),  # ... from queue 1 on
        ([[1], [10]], 1, 0, [1]),
        ([[1], [10]], 1, 1, [10]),
        ([[], [], []], 5, 0, []),
        ([[1, 2, 3]], 0, 0, []),
    ],
)
def test_fair_share_splits_a_batch_evenly_between_queues(
    queues: list[list[int]], size: int, first: int, expected: list[int]
) -> None:
    from storeloop.messaging.dispatcher import fair_share

    assert fair_share(queues, size, first) == expected


@time_machine.travel(NOON, tick=False)
def test_a_backlog_on_one_channel_does_not_hold_back_another(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    """Six e-mails queued before two texts: a batch of four takes two of each, not four e-mails."""
    emails = [queue(dispatcher, store, contact, "transactional", f"e{n}") for n in range(6)]
    texts = [queue(dispatcher, store, contact, "transactional", f"s{n}", channel="sms") for n in range(2)]
    assert dispatcher.process_queue(batch_size=4) == Counter({"sent": 4})
    # (Sorted: a batch's parts go to a provider side by side, in no set order.)
    assert sorted(e.message_id for e in channels["email"].sent) == [m.pk for m in emails[:2]]
    assert sorted(e.message_id for e in channels["sms"].sent) == [m.pk for m in texts]
    assert Message.objects.filter(status="queued").count() == 4


@time_machine.travel(NOON, tick=False)
def test_batches_smaller_than_the_channels_serve_them_in_turn(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    queue(dispatcher, store, contact, "transactional", "e1")
    queue(dispatcher, store, contact, "transactional", "e2")
    queue(dispatcher, store, contact, "transactional", "s1", channel="sms")
    for _ in range(2):
        dispatcher.process_queue(batch_size=1)
    assert (len(channels["email"].sent), len(channels["sms"].sent)) == (1, 1)


@time_machine.travel(NOON, tick=True)
def test_a_drain_looks_its_channel_up_again_only_after_a_while(
    channels: dict[str, RecordingChannel], store: Any, contact: Contact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch after batch rides the channel looked up first; after ``CHANNEL_TTL`` it is asked
    again, so a connection changed or switched off meanwhile takes effect."""
    from storeloop.messaging import dispatcher as dispatcher_module

    lookups: list[str] = []

    def factory(store: Any, channel: str) -> RecordingChannel:
        lookups.append(channel)
        return channels[channel]

    version = template(store)
    for n in range(3):
        queue(MessageDispatcher(factory), store, contact, "transactional", f"t{n}", version=version)
    assert MessageDispatcher(factory).drain(budget_seconds=60, batch_size=1) == (Counter({"sent": 3}), False)
    assert lookups == ["email"]

    monkeypatch.setattr(dispatcher_module, "CHANNEL_TTL", 0.0)
    lookups.clear()
    for n in range(3, 6):
        queue(MessageDispatcher(factory), store, contact, "transactional", f"t{n}", version=version)
    assert MessageDispatcher(factory).drain(budget_seconds=60, batch_size=1) == (Counter({"sent": 3}), False)
    assert lookups == ["email"] * 3


@time_machine.travel(NOON, tick=True)
def test_a_drain_reads_the_store_again_only_after_a_while(
    channels: dict[str, RecordingChannel], store: Any, contact: Contact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch after batch uses the store loaded first (its secrets are decrypted on load); after
    ``CHANNEL_TTL`` it is read again, so a renamed shop shows in the next batch's messages."""
    from storeloop.messaging import dispatcher as dispatcher_module

    repo = TemplateRepository()
    version = repo.save_template(store, "shop", "email", subject="From {{ store.name }}", body_text="News")
    repo.publish(version)

    renamed = [0]

    def context_then_rename(message: Message) -> dict[str, Any]:  # the shop renamed after each message
        context = default_context(message)
        renamed[0] += 1
        type(store).objects.filter(pk=store.pk).update(name=f"Shop {renamed[0] + 1}")
        return context

    for ttl, names in ((60.0, ["Shop 1", "Shop 1", "Shop 1"]), (0.0, ["Shop 1", "Shop 2", "Shop 3"])):
        monkeypatch.setattr(dispatcher_module, "CHANNEL_TTL", ttl)
        renamed[0] = 0
        type(store).objects.filter(pk=store.pk).update(name="Shop 1")
        sender = RecordingChannel("email")
        dispatcher = MessageDispatcher(lambda s, c, sender=sender: sender, context_builder=context_then_rename)
        for n in range(3):
            queue(dispatcher, store, contact, "transactional", f"{ttl}-{n}", version=version)
        assert dispatcher.drain(budget_seconds=60, batch_size=1) == (Counter({"sent": 3}), False)
        assert [e.rendered.subject for e in sender.sent] == [f"From {name}" for name in names]


@time_machine.travel(NOON, tick=False)
def test_drain_reports_a_backlog_once_when_a_claim_comes_back_full(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    version = template(store)
    for n in range(5):
        queue(dispatcher, store, contact, "transactional", f"t{n}", version=version)
    calls: list[str] = []
    assert dispatcher.drain(budget_seconds=60, batch_size=2, on_backlog=lambda: calls.append("more")) == (
        Counter({"sent": 5}),
        False,
    )
    assert calls == ["more"]  # the first full claim only, not each of the two

    queue(dispatcher, store, contact, "transactional", "t5", version=version)
    dispatcher.drain(budget_seconds=60, batch_size=2, on_backlog=lambda: calls.append("again"))
    assert calls == ["more"]  # one message due: no backlog


# --- a store's own marketing rules (MessagingConnection: cap and quiet hours) --------------------------


def connect(store: Any, channel: str, **rules: Any) -> None:
    provider = {"email": "smtp", "sms": "twilio", "whatsapp": "whatsapp_cloud"}[channel]
    MessagingConnection.objects.create(store=store, channel=channel, provider=provider, credentials="{}")
    set_marketing_policy(store.pk, channel, **rules)


def test_a_stores_own_frequency_cap_replaces_the_default(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    connect(store, "email", cap_hours=2)
    grant(contact)
    version = template(store)
    with time_machine.travel(NOON, tick=False):
        queue(dispatcher, store, contact, "marketing", "m1", version=version)
        queue(dispatcher, store, contact, "marketing", "m2", version=version)
        assert dispatcher.process_queue() == Counter({"sent": 1, "delayed": 1})  # one per batch
    with time_machine.travel(NOON + dt.timedelta(minutes=2), tick=False):
        assert dispatcher.process_queue() == Counter({"delayed": 1})
        assert Message.objects.get(status="queued").not_before == NOON + dt.timedelta(hours=2)
    with time_machine.travel(NOON + dt.timedelta(hours=2, minutes=1), tick=False):
        assert dispatcher.process_queue() == Counter({"sent": 1})  # the default would wait 16 h
    assert len(channels["email"].sent) == 2


def test_no_cap_sends_every_marketing_message(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    connect(store, "email", cap_hours=0)
    grant(contact)
    version = template(store)
    with time_machine.travel(NOON, tick=False):
        queue(dispatcher, store, contact, "marketing", "m1", version=version)
        assert dispatcher.process_queue() == Counter({"sent": 1})
        queue(dispatcher, store, contact, "marketing", "m2", version=version)
        assert dispatcher.process_queue() == Counter({"sent": 1})


@pytest.mark.parametrize(
    ("quiet_hours", "at_utc", "until_utc"),
    [
        # 22:00-07:00 Berlin: 21:30 local goes, 22:30 local waits until 07:00 (05:00 UTC in summer).
        ((dt.time(22), dt.time(7)), dt.datetime(2026, 6, 1, 19, 30, tzinfo=dt.UTC), None),
        ((dt.time(22), dt.time(7)), dt.datetime(2026, 6, 1, 20, 30, tzinfo=dt.UTC),
         dt.datetime(2026, 6, 2, 5, 0, tzinfo=dt.UTC)),
        # No quiet hours (the same start and end): 23:30 local goes.
        ((dt.time(0), dt.time(0)), dt.datetime(2026, 6, 1, 21, 30, tzinfo=dt.UTC), None),
        # Quiet hours within a day (a shop's siesta, 13:00-15:00): 14:00 local waits until 15:00.
        ((dt.time(13), dt.time(15)), dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC),
         dt.datetime(2026, 6, 1, 13, 0, tzinfo=dt.UTC)),
    ],
)  # fmt: skip
def test_a_stores_own_quiet_hours_replace_the_default(
    dispatcher: MessageDispatcher,
    channels: dict[str, RecordingChannel],
    store: Any,
    contact: Contact,
    quiet_hours: tuple[dt.time, dt.time],
    at_utc: dt.datetime,
    until_utc: dt.datetime | None,
) -> None:
    connect(store, "sms", quiet_hours=quiet_hours)
    grant(contact, "sms")
    with time_machine.travel(at_utc, tick=False):
        queue(dispatcher, store, contact, "marketing", "sms-1", channel="sms")
        counts = dispatcher.process_queue()
    message = Message.objects.get()
    if until_utc is None:
        assert (counts, message.status, len(channels["sms"].sent)) == (Counter({"sent": 1}), "sent", 1)
    else:
        assert (counts, message.reason, message.not_before) == (Counter({"delayed": 1}), "quiet_hours", until_utc)
        assert channels["sms"].sent == []


def test_quiet_hours_can_be_set_for_email_too(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    connect(store, "email", quiet_hours=(dt.time(21), dt.time(8)))
    grant(contact)
    with time_machine.travel(dt.datetime(2026, 6, 1, 21, 30, tzinfo=dt.UTC), tick=False):  # 23:30 in Berlin
        queue(dispatcher, store, contact, "marketing", "m1")
        assert dispatcher.process_queue() == Counter({"delayed": 1})
    assert channels["email"].sent == []


def test_a_policy_is_refused_for_a_channel_not_connected_or_a_negative_cap(store: Any) -> None:
    with pytest.raises(NotFound) as missing:
        set_marketing_policy(store.pk, "sms", cap_hours=1)
    assert missing.value.code == "channel_not_configured"
    MessagingConnection.objects.create(store=store, channel="sms", provider="twilio", credentials="{}")
    with pytest.raises(ValidationError) as negative:
        set_marketing_policy(store.pk, "sms", cap_hours=-1)
    assert negative.value.code == "invalid_cap"
    assert MessagingConnection.objects.get().marketing_cap_hours is None


@pytest.mark.parametrize(
    ("channel", "frequency", "cap"),
    [
        ("sms", None, dt.timedelta(hours=24)),
        ("whatsapp", None, dt.timedelta(hours=24)),
        ("email", "weekly", dt.timedelta(days=7)),
        ("sms", "monthly", dt.timedelta(days=30)),
    ],
)
def test_default_caps_per_channel_and_the_contacts_chosen_frequency(
    dispatcher: MessageDispatcher,
    channels: dict[str, RecordingChannel],
    store: Any,
    contact: Contact,
    channel: str,
    frequency: str | None,
    cap: dt.timedelta,
) -> None:
    grant(contact, channel)
    if frequency:
        MessagingConsentManager().set_preferences(contact, frequency=frequency)
    version = template(store, channel)
    with time_machine.travel(NOON, tick=False):
        queue(dispatcher, store, contact, "marketing", "m1", channel=channel, version=version)
        assert dispatcher.process_queue() == Counter({"sent": 1})
        queue(dispatcher, store, contact, "marketing", "m2", channel=channel, version=version)
        assert dispatcher.process_queue() == Counter({"delayed": 1})
        waiting = Message.objects.get(status="queued")
        assert (waiting.reason, waiting.not_before) == ("frequency_cap", NOON + cap)
    with time_machine.travel(NOON + cap + dt.timedelta(minutes=1), tick=False):
        assert dispatcher.process_queue() == Counter({"sent": 1})
    assert len(channels[channel].sent) == 2


def test_quiet_hours_hold_whatsapp_marketing_too(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, contact: Contact
) -> None:
    grant(contact, "whatsapp")
    with time_machine.travel(dt.datetime(2026, 6, 1, 20, 30, tzinfo=dt.UTC), tick=False):  # 22:30 in Berlin
        queue(dispatcher, store, contact, "marketing", "wa-1", channel="whatsapp")
        assert dispatcher.process_queue() == Counter({"delayed": 1})
    message = Message.objects.get()
    assert (message.reason, message.not_before) == ("quiet_hours", dt.datetime(2026, 6, 2, 6, 0, tzinfo=dt.UTC))
    assert channels["whatsapp"].sent == []


def _connect_email(store: Any, rate: float, settings: dict[str, Any] | None = None) -> None:
    MessagingConnection.objects.create(store=store, channel="email", provider="smtp", messages_per_second=rate,
                                       settings=settings or {}, credentials='{"username": "agency"}')  # fmt: skip


def _queue_many(dispatcher: MessageDispatcher, store: Any, count: int) -> None:
    version = template(store)
    for i in range(count):
        person = Contact.objects.create(store=store, email=f"c{i}@example.com")
        queue(dispatcher, store, person, "transactional", f"receipt-{i}", version=version)


@time_machine.travel(NOON, tick=False)
def test_a_batch_keeps_only_what_the_stores_rate_sends_within_the_window_and_releases_the_rest(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any
) -> None:
    _connect_email(store, rate=1)  # one a second: 60 in the minute a batch may take
    _queue_many(dispatcher, store, 70)
    assert dispatcher.process_queue(batch_size=100) == Counter({"sent": 60})
    left = Message.objects.exclude(status="sent")
    assert (left.count(), set(left.values_list("status", "claimed_until"))) == (10, {("queued", None)})


@time_machine.travel(NOON, tick=False)
def test_stores_sharing_a_provider_accounts_rate_share_the_batchs_window(
    dispatcher: MessageDispatcher, channels: dict[str, RecordingChannel], store: Any, other_store: Any
) -> None:
    shared = {"host": "relay.example", "port": 587, "account_messages_per_second": 1}
    for shop in (store, other_store):
        _connect_email(shop, rate=100, settings=shared)  # each alone could send 6,000 in the window
        _queue_many(dispatcher, shop, 40)
    assert dispatcher.process_queue(batch_size=200) == Counter({"sent": 60})  # the account's minute
    sent = Counter(Message.objects.filter(status="sent").values_list("store_id", flat=True))
    assert sent == Counter({store.pk: 30, other_store.pk: 30})
    assert set(Message.objects.exclude(status="sent").values_list("status", "claimed_until")) == {("queued", None)}
