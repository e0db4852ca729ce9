"""Campaigns sent through the real dispatcher to the fake SMTP relay: pause, resume and cancel
never make a second copy, figures are live, and ``send_templated_message`` is idempotent."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from tests.drain import drain

from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import NotFound, ValidationError
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.messaging.campaigns.errors import CampaignStateError
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.tests.conftest import person, publish
from storeloop.messaging.channels.connections import connect_smtp
from storeloop.messaging.manager import MessagingManager
from storeloop.messaging.models import Message
from storeloop.messaging.tasks import advance_campaigns, kick_dispatch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channels_closed")]
gate = MessagingConsentManager()
EVERYONE: dict[str, Any] = {"all": []}
DISPATCH = "storeloop.messaging.tasks.dispatch_messages"
MATERIALISE = "storeloop.messaging.tasks.materialise_campaign"


@pytest.fixture
def relay(store: Any, smtp: FakeSmtpServer) -> FakeSmtpServer:
    connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                 from_addr="shop@shop.example", messages_per_second=1000)  # fmt: skip
    return smtp


def received(smtp: FakeSmtpServer) -> Counter[str]:
    """How many messages each recipient got."""
    return Counter(m.rcpt_tos[0] for m in smtp.messages)


def audience_of(store: Any, count: int) -> list[Contact]:
    return [person(store, f"p{i:02}", consent=("email",)) for i in range(count)]


def figures(campaign: Campaign) -> dict[str, int]:
    return {k: v for k, v in MessagingManager().campaign_figures(campaign).as_dict().items() if v}


def test_pause_holds_resume_sends_the_rest_and_nobody_gets_two(store: Any, news: Any, relay: FakeSmtpServer) -> None:
    manager = MessagingManager()
    people = audience_of(store, 12)
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    manager.materialise_campaign(campaign.pk, batch_size=4, should_stop=lambda: True)
    assert manager.dispatcher.process_queue(batch_size=3) == Counter({"sent": 3})

    manager.pause_campaign(campaign)
    assert figures(campaign) == {"targeted": 4, "sent": 3, "held": 1, "messages": 4}
    # Paused: materialisation stops and nothing is sent.
    assert manager.materialise_campaign(campaign.pk, batch_size=4).batches == 0
    assert manager.dispatch_due() == Counter()
    assert len(relay.messages) == 3
    with pytest.raises(CampaignStateError):
        manager.pause_campaign(campaign)

    manager.resume_campaign(campaign)
    assert manager.materialise_campaign(campaign.pk, batch_size=4).materialised is True
    assert manager.dispatch_due() == Counter({"sent": 9})
    campaign.refresh_from_db()
    assert campaign.state == "completed"
    assert received(relay) == Counter({p.email: 1 for p in people})
    assert set(relay.count_by_message_id().values()) == {1}
    assert figures(campaign) == {"targeted": 12, "sent": 12, "messages": 12}
    with pytest.raises(CampaignStateError) as late:
        manager.resume_campaign(campaign)
    assert late.value.message == f"campaign {campaign.pk} is completed; only paused campaigns resume"

    # Resuming or re-running a finished campaign's work changes nothing.
    assert manager.materialise_campaign(campaign.pk).messages == 0
    assert manager.dispatch_due() == Counter()
    assert len(relay.messages) == 12


def test_a_drain_with_a_backlog_asks_for_a_second_worker(store: Any, news: Any, relay: FakeSmtpServer) -> None:
    """More due than one batch: the drain queues another (for an idle worker to join it at once,
    not at the scheduler's next kick); less than one batch due: it does not."""
    manager = MessagingManager()
    audience_of(store, 5)
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    manager.materialise_campaign(campaign.pk)
    DBTaskResult.objects.all().delete()
    assert manager.dispatch_due(batch_size=10) == Counter({"sent": 5})
    assert not DBTaskResult.objects.filter(task_path=DISPATCH).exists()

    for i in range(8):
        person(store, f"q{i:02}", consent=("email",))
    second = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    manager.materialise_campaign(second.pk)
    DBTaskResult.objects.all().delete()
    # The five who just got the first one are held back by the frequency cap.
    assert manager.dispatch_due(batch_size=4) == Counter({"sent": 8, "delayed": 5})
    assert DBTaskResult.objects.filter(task_path=DISPATCH, status="READY").count() == 1


def test_a_drain_beside_another_gives_way_to_a_waiting_materialisation(
    store: Any, news: Any, relay: FakeSmtpServer
) -> None:
    """Drains keep a worker while anything is due; a campaign's continuation waiting behind them
    would leave its channel idle. A drain gives way to it, but never the only one running."""
    from storeloop.messaging.tasks import dispatch_messages, drain_should_give_way, materialise_campaign

    manager = MessagingManager()
    audience_of(store, 3)
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    manager.materialise_campaign(campaign.pk)
    DBTaskResult.objects.all().delete()
    running = [dispatch_messages.enqueue().id]  # this drain, as the worker marks it
    DBTaskResult.objects.filter(id__in=running).update(status="RUNNING")
    later = materialise_campaign.using(run_after=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).enqueue("1")
    assert drain_should_give_way() is False  # nothing ready to materialise
    materialise_campaign.enqueue("1", "continuation")
    assert drain_should_give_way() is False  # the only drain running: sending must go on
    running.append(dispatch_messages.enqueue().id)
    DBTaskResult.objects.filter(id__in=running).update(status="RUNNING")
    assert drain_should_give_way() is True
    assert manager.dispatch_due() == Counter()  # gave way before its first claim, and queued its continuation
    assert Message.objects.filter(status="queued").count() == 3
    assert DBTaskResult.objects.filter(task_path=DISPATCH, status="READY").count() == 1
    DBTaskResult.objects.exclude(id=later.id).filter(task_path=MATERIALISE).delete()  # the worker took it
    assert manager.dispatch_due() == Counter({"sent": 3})


def test_cancel_stops_what_was_not_sent(store: Any, news: Any, relay: FakeSmtpServer) -> None:
    manager = MessagingManager()
    audience_of(store, 8)
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    manager.materialise_campaign(campaign.pk, batch_size=5, should_stop=lambda: True)
    assert manager.dispatcher.process_queue(batch_size=2) == Counter({"sent": 2})
    manager.pause_campaign(campaign)
    manager.cancel_campaign(campaign)
    assert manager.materialise_campaign(campaign.pk).batches == 0
    assert manager.dispatch_due() == Counter()
    campaign.refresh_from_db()
    assert campaign.state == "cancelled"
    assert figures(campaign) == {"targeted": 5, "sent": 2, "cancelled": 3, "messages": 5}
    assert set(Message.objects.filter(status="cancelled").values_list("reason", flat=True)) == {"campaign cancelled"}
    assert len(relay.messages) == 2
    with pytest.raises(CampaignStateError):
        manager.cancel_campaign(campaign)


@pytest.mark.parametrize(("stop", "status"), [("pause_campaign", "held"), ("cancel_campaign", "cancelled")])
def test_a_send_answered_try_again_after_its_campaign_stopped_does_not_go_out_later(
    store: Any, news: Any, relay: FakeSmtpServer, stop: str, status: str
) -> None:
    """The campaign is paused or cancelled while its message is with the provider, which answers
    451: the message is held (and sent once after a resume) or cancelled, never queued to go out."""
    manager = MessagingManager()
    (ann,) = audience_of(store, 1)
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    manager.materialise_campaign(campaign.pk)
    relay.latency_ms = 300  # at MAIL, RCPT and the end of DATA: time to stop the campaign meanwhile
    relay.fail_next, relay.fail_stage, relay.fail_reply = 1, "data", (451, "4.3.0 Try again later")
    counts: Counter[str] = Counter()

    def send() -> None:
        try:
            counts.update(manager.dispatcher.process_queue())
        finally:
            db_connection.close()

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 10
    while not Message.objects.filter(status="sending").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    getattr(manager, stop)(campaign)
    sender.join(30)
    assert counts == Counter({"retry": 1})
    message = Message.objects.get()
    assert (message.status, message.attempts, relay.messages) == (status, 1, [])

    later = timezone.now() + dt.timedelta(hours=1)  # past the retry's back-off
    if status == "held":
        manager.resume_campaign(campaign)
    with time_machine.travel(later, tick=False):
        sent = manager.dispatcher.process_queue()
    if status == "held":
        assert (sent, received(relay)) == (Counter({"sent": 1}), Counter({ann.email: 1}))
    else:
        assert (sent, relay.messages, Message.objects.get().reason) == (Counter(), [], "campaign cancelled")


def test_figures_count_consent_changes_after_queueing_and_unsubscribes(
    store: Any, news: Any, relay: FakeSmtpServer, settings: Any
) -> None:
    manager = MessagingManager()
    people = audience_of(store, 6)
    person(store, "never")  # in the audience, no consent
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    manager.materialise_campaign(campaign.pk)
    # After materialisation: one withdraws, one address bounces elsewhere; the gate at send time wins.
    gate.withdraw_consent(people[0], "email", "marketing", source="preference_center")
    gate.suppress(store.pk, "email", people[1].email, "hard_bounce")
    assert manager.dispatch_due() == Counter({"sent": 4, "suppressed": 2})
    assert figures(campaign) == {"targeted": 7, "suppressed": 3, "sent": 4, "messages": 6}

    mail = next(m for m in relay.messages if m.rcpt_tos[0] == people[2].email)
    link = str(mail.message["List-Unsubscribe"]).strip("<>")
    assert Client().post(urlsplit(link).path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert figures(campaign)["unsubscribed"] == 1
    Message.objects.filter(campaign_id=campaign.pk, contact=people[3]).update(status="delivered")
    assert figures(campaign) == {"targeted": 7, "suppressed": 3, "sent": 4, "delivered": 1, "unsubscribed": 1,
                                 "messages": 6}  # fmt: skip


def test_send_templated_message_is_idempotent_and_starts_a_drain(store: Any, news: Any, relay: FakeSmtpServer) -> None:
    manager = MessagingManager()
    receipt = publish(store, "receipt", "email", subject="Thanks {{ contact.first_name }}", body_text="Order received")
    ann = person(store, "ann")
    first = manager.send_templated_message(store, ann, "receipt", "email", "transactional", {}, "order-1-receipt")
    again = manager.send_templated_message(store, ann, "receipt", "email", "transactional", {}, "order-1-receipt")
    assert first.pk == again.pk
    assert (first.template_id, first.priority, first.campaign_id) == (receipt.pk, 10, None)
    assert DBTaskResult.objects.filter(task_path=DISPATCH).count() == 1  # one drain waiting serves both
    drain()
    assert Message.objects.get().status == "sent"
    assert received(relay) == Counter({"ann@example.com": 1})
    assert relay.messages[0].message["Subject"] == "Thanks Ann"

    # A merged contact's message goes to the contact it was merged into.
    bea = person(store, "bea")
    Contact.objects.filter(pk=ann.pk).update(merged_into=bea)
    ann.refresh_from_db()
    moved = manager.send_templated_message(store, ann, "receipt", "email", "transactional", None, "order-2-receipt")
    assert moved.contact_id == bea.pk


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("receipt", "email", "transactional", {}, "campaign:1:1"), "invalid_dedupe_key"),
        (("receipt", "email", "transactional", {}, ""), "invalid_dedupe_key"),
        (("receipt", "email", "transactional", {}, "k" * 201), "invalid_dedupe_key"),
        (("receipt", "email", "transactional", {"email": "x@example.com"}, "k"), "invalid_context"),
        (("receipt", "email", "transactional", {"custom": "text"}, "k"), "invalid_context"),
        (("receipt", "email", "transactional", {"order_id": 999}, "k"), "order_not_found"),
        (("receipt", "email", "newsletter", {}, "k"), "invalid_message"),
        (("missing", "email", "transactional", {}, "k"), "template_not_found"),
    ],
)
def test_send_templated_message_refuses_bad_input_and_writes_nothing(
    store: Any, relay: FakeSmtpServer, args: tuple[Any, ...], code: str
) -> None:
    publish(store, "receipt", "email", subject="Thanks", body_text="Order received")
    ann = person(store, "ann")
    with pytest.raises((ValidationError, NotFound)) as caught:
        MessagingManager().send_templated_message(store, ann, *args)
    assert caught.value.code == code
    assert not Message.objects.exists()
    assert not DBTaskResult.objects.filter(task_path=DISPATCH).exists()


def test_a_contact_of_another_store_is_refused(store: Any, other_store: Any, relay: FakeSmtpServer) -> None:
    publish(store, "receipt", "email", subject="Thanks", body_text="Order received")
    stranger = person(other_store, "eve")
    with pytest.raises(ValidationError) as caught:
        MessagingManager().send_templated_message(store, stranger, "receipt", "email", "transactional", {}, "k")
    assert caught.value.code == "contact_not_found"
    assert not Message.objects.exists()


def test_the_scheduler_tick_starts_due_campaigns_and_completes_finished_ones(
    store: Any, news: Any, relay: FakeSmtpServer
) -> None:
    manager = MessagingManager()
    people = audience_of(store, 3)
    start = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=True) as clock:
        campaign = manager.create_campaign(store, name="News", template_key="news", channel="email",
                                           audience=EVERYONE)  # fmt: skip
        manager.schedule_campaign(campaign, start + dt.timedelta(hours=2))
        DBTaskResult.objects.all().delete()  # the timed start task; the tick is tested on its own here
        assert advance_campaigns() == {"started": 0, "revived": 0, "completed": 0}
        clock.shift(dt.timedelta(hours=2))
        assert advance_campaigns() == {"started": 1, "revived": 0, "completed": 0}
        assert advance_campaigns()["started"] == 0  # started once
        drain()  # materialise, then the drain it requests
        assert received(relay) == Counter({p.email: 1 for p in people})
        campaign.refresh_from_db()
        assert campaign.state == "completed"
        assert kick_dispatch() is False  # nothing due


def test_a_stalled_materialisation_is_queued_again(store: Any, news: Any, relay: FakeSmtpServer) -> None:
    manager = MessagingManager()
    audience_of(store, 3)
    start = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=True) as clock:
        campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
        manager.materialise_campaign(campaign.pk, batch_size=1, should_stop=lambda: True)
        DBTaskResult.objects.all().delete()  # its task was lost (e.g. dead-lettered and pruned)
        clock.shift(dt.timedelta(minutes=11))
        assert advance_campaigns() == {"started": 0, "revived": 1, "completed": 0}
        assert advance_campaigns()["revived"] == 0
        drain()
    assert len(relay.messages) == 3
    campaign.refresh_from_db()
    assert campaign.state == "completed"
