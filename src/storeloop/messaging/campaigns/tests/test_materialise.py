"""Materialising campaigns: consent decides who gets a message, local time decides when, and an
interrupted or repeated materialisation never makes a second message."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tasks_db.models import DBTaskResult

from storeloop.consent.models import Channel, Purpose
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.messaging.campaigns.eligibility import eligible_q
from storeloop.messaging.campaigns.errors import CampaignStateError
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.tests.conftest import bulk_audience, person, publish
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.manager import MessagingManager
from storeloop.messaging.models import Message
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
gate = MessagingConsentManager()
manager = MessagingManager()
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
EVERYONE: dict[str, Any] = {"all": []}


def messages(campaign: Campaign) -> dict[str, str]:
    """first name -> status of the campaign's messages."""
    rows = Message.objects.filter(campaign_id=campaign.pk).values_list("contact__first_name", "status")
    return dict(rows)


def test_only_contacts_the_consent_gate_allows_get_a_message(store: Any, news: Any) -> None:
    with time_machine.travel(NOON, tick=False):
        person(store, "ann", consent=("email",))
        bob = person(store, "bob", consent=("email",))
        gate.withdraw_consent(bob, "email", "marketing", source="unsubscribe_link")
        person(store, "cara", consent=("sms",))  # marketing consent, but not for email
        dan = person(store, "dan")
        gate.grant_consent(dan, "email", "marketing", source="form", double_opt_in=True)  # not confirmed
        eve = person(store, "eve", consent=("email",))
        gate.suppress(store.pk, "email", eve.email, "hard_bounce")
        fay = person(store, "fay", consent=("email",))
        gate.set_preferences(fay, paused_until=NOON + dt.timedelta(days=3))
        gus = person(store, "gus", consent=("email",))
        Contact.objects.filter(pk=gus.pk).update(email="")
        person(store, "hal", consent=("email",))
        campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
        result = manager.materialise_campaign(campaign.pk)
    assert result.materialised is True
    assert messages(campaign) == {"Ann": "queued", "Hal": "queued"}
    campaign.refresh_from_db()
    assert (campaign.state, campaign.targeted, campaign.excluded) == ("running", 8, 6)
    figures = manager.campaign_figures(campaign)
    assert (figures.targeted, figures.suppressed, figures.queued, figures.messages) == (8, 6, 2, 2)
    # Every message carries the pinned template, the campaign's dedupe key and marketing priority.
    rows = Message.objects.filter(campaign_id=campaign.pk)
    assert {(m.template_id, m.purpose, m.priority, m.dedupe_key) for m in rows} == {
        (campaign.template_id, "marketing", 0, f"campaign:{campaign.pk}:{m.contact_id}") for m in rows
    }


@pytest.mark.parametrize(("channel", "purpose"), list(itertools.product(Channel.values, Purpose.values)))
def test_the_consent_filter_agrees_with_has_consent(store: Any, channel: str, purpose: str) -> None:
    """Every combination of consent state, suppression, pause and missing address, both ways."""
    now = NOON
    contacts = []
    for n, (state, suppressed, paused, address) in enumerate(
        itertools.product(["none", "granted", "pending", "withdrawn"], [False, True], [False, True], [True, False])
    ):
        contact = Contact.objects.create(store=store, email=f"c{n}@example.com" if address else "",
                                         phone=f"+4915112345{n:03}" if address else "")  # fmt: skip
        if state != "none":
            for p in Purpose.values:
                if state == "withdrawn":
                    gate.withdraw_consent(contact, channel, p, source="test", occurred_at=now)
                else:
                    gate.grant_consent(contact, channel, p, source="test", double_opt_in=state == "pending",
                                       occurred_at=now)  # fmt: skip
        if suppressed and address:
            gate.suppress(store.pk, channel, contact.email if channel == "email" else contact.phone, "complaint")
        if paused:
            gate.set_preferences(contact, paused_until=now + dt.timedelta(days=1))
        contacts.append(contact)
    allowed = set(
        Contact.objects.filter(store=store).filter(eligible_q(channel, purpose, now)).values_list("pk", flat=True)
    )
    expected = {c.pk for c in contacts if gate.has_consent(c, channel, purpose, at=now).allowed}
    assert allowed == expected
    assert 0 < len(expected) < len(contacts)


def test_local_time_puts_each_recipient_at_that_wall_clock_time_in_their_zone(store: Any) -> None:
    publish(store, "sale", "sms", body_text="20% off today")
    with time_machine.travel(NOON, tick=False):
        for name, phone, country in [
            ("berlin", "+4915112345678", ""),
            ("tokyo", "+819012345678", ""),
            ("newyork", "+12125550123", ""),
            ("moscow", "+79161234567", ""),  # a Russian mobile, listed in 16 zones: Moscow's, the main one
            ("lima", "", "PE"),
            ("canada", "", "CA"),  # a country of several zones: its main one
            ("nowhere", "", ""),
        ]:
            contact = person(store, name, phone=phone, country=country, consent=("sms",))
            if not phone:  # no phone: the zone comes from the country; the SMS gate needs a number
                Contact.objects.filter(pk=contact.pk).update(phone=f"+5119{len(name):07}")
        campaign = manager.create_campaign(store, name="Morning sale", template_key="sale", channel="sms",
                                           audience=EVERYONE)  # fmt: skip
        # 10:00 on 3 June where each recipient is; the earliest zone (UTC+14) is due at 20:00 UTC on 2 June.
        manager.schedule_campaign(campaign, dt.datetime(2026, 6, 3, 10, 0), local_time=True)
        campaign.refresh_from_db()
        assert campaign.starts_at == dt.datetime(2026, 6, 2, 20, 0, tzinfo=dt.UTC)
        assert manager.materialise_campaign(campaign.pk).batches == 0  # not due yet
        assert not Message.objects.exists()
    with time_machine.travel(dt.datetime(2026, 6, 2, 20, 0, tzinfo=dt.UTC), tick=False):
        manager.materialise_campaign(campaign.pk)
    due = dict(Message.objects.values_list("contact__first_name", "not_before"))

    def at_ten(zone: str) -> dt.datetime:
        return dt.datetime(2026, 6, 3, 10, 0, tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)

    assert due == {
        "Berlin": at_ten("Europe/Berlin"),  # 08:00 UTC (summer time)
        "Tokyo": at_ten("Asia/Tokyo"),  # 01:00 UTC
        "Newyork": at_ten("America/New_York"),  # 14:00 UTC
        "Moscow": at_ten("Europe/Moscow"),  # 07:00 UTC (libphonenumber lists Almaty first: 05:00 UTC)
        "Canada": at_ten("America/Toronto"),  # 14:00 UTC
        "Lima": at_ten("America/Lima"),  # 15:00 UTC: Peru's phone prefix +51
        "Nowhere": dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC),  # a number that places nobody, no country: UTC
    }
    assert due["Berlin"] == dt.datetime(2026, 6, 3, 8, 0, tzinfo=dt.UTC)


def test_local_time_already_past_in_a_zone_sends_there_at_once(store: Any) -> None:
    publish(store, "sale", "sms", body_text="20% off today")
    start = dt.datetime(2026, 6, 3, 9, 0, tzinfo=dt.UTC)  # 11:00 in Berlin, 05:00 in New York
    with time_machine.travel(start, tick=False):
        person(store, "berlin", phone="+4915112345678", consent=("sms",))
        person(store, "newyork", phone="+12125550123", consent=("sms",))
        campaign = manager.create_campaign(store, name="Sale", template_key="sale", channel="sms", audience=EVERYONE)
        manager.schedule_campaign(campaign, dt.datetime(2026, 6, 3, 10, 0), local_time=True)
        manager.materialise_campaign(campaign.pk)
    due = dict(Message.objects.values_list("contact__first_name", "not_before"))
    assert due == {"Berlin": start, "Newyork": dt.datetime(2026, 6, 3, 14, 0, tzinfo=dt.UTC)}


def test_an_interrupted_materialisation_continues_where_it_stopped(store: Any, news: Any) -> None:
    people = [person(store, f"p{i:02}", consent=("email",)) for i in range(7)]
    gate.withdraw_consent(people[3], "email", "marketing", source="test")
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    first = manager.materialise_campaign(campaign.pk, batch_size=2, should_stop=lambda: True)
    assert (first.batches, first.messages, first.materialised) == (1, 2, False)
    campaign.refresh_from_db()
    assert (campaign.cursor, campaign.targeted, campaign.excluded) == (people[1].pk, 2, 0)
    rest = manager.materialise_campaign(campaign.pk, batch_size=2)
    assert (rest.batches, rest.messages, rest.materialised) == (3, 4, True)
    again = manager.materialise_campaign(campaign.pk, batch_size=2)
    assert (again.batches, again.messages) == (0, 0)
    campaign.refresh_from_db()
    assert (campaign.targeted, campaign.excluded) == (7, 1)
    assert sorted(Message.objects.values_list("contact_id", flat=True)) == sorted(
        p.pk for i, p in enumerate(people) if i != 3
    )


def test_a_message_that_already_exists_is_kept_and_not_doubled(store: Any, news: Any) -> None:
    people = [person(store, f"p{i}", consent=("email",)) for i in range(4)]
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    # As if an earlier run had committed this recipient's message without moving the cursor.
    existing = MessageDispatcher(lambda s, c: None).queue_message(  # type: ignore[arg-type,return-value]
        store=store, contact=people[2], channel="email", purpose="marketing", template=news,
        dedupe_key=f"campaign:{campaign.pk}:{people[2].pk}", campaign_id=campaign.pk,
    )  # fmt: skip
    assert manager.materialise_campaign(campaign.pk).materialised is True
    rows = Message.objects.filter(campaign_id=campaign.pk)
    assert sorted(rows.values_list("contact_id", flat=True)) == sorted(p.pk for p in people)
    assert rows.get(contact=people[2]).idempotency_key == existing.idempotency_key


def test_materialised_messages_carry_the_campaigns_values_and_their_own_keys(store: Any, news: Any) -> None:
    """The rows the set-based insert writes read back as the model describes them."""
    people = [person(store, f"p{i}", consent=("email",)) for i in range(5)]
    with time_machine.travel(NOON, tick=False):
        campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE,
                                             custom={"code": "SPRING"})  # fmt: skip
        manager.materialise_campaign(campaign.pk)
    rows = list(Message.objects.filter(campaign_id=campaign.pk).order_by("contact_id"))
    assert [(m.contact_id, m.dedupe_key) for m in rows] == [(p.pk, f"campaign:{campaign.pk}:{p.pk}") for p in people]
    assert {(m.store_id, m.channel, m.purpose, m.template_id, m.status, m.priority, m.attempts) for m in rows} == {
        (store.pk, "email", "marketing", news.pk, "queued", 0, 0)
    }
    assert {(m.not_before, m.created_at) for m in rows} == {(NOON, NOON)}
    assert all(m.context == {"custom": {"code": "SPRING"}} for m in rows)
    keys = [m.idempotency_key for m in rows]
    assert len(set(keys)) == 5
    assert {(k.version, k.variant) for k in keys} == {(4, uuid.RFC_4122)}


def test_a_time_budget_queues_the_rest_as_a_continuation(store: Any, news: Any) -> None:
    for i in range(3):
        person(store, f"p{i}", consent=("email",))
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    before = DBTaskResult.objects.filter(task_path="storeloop.messaging.tasks.materialise_campaign").count()
    result = manager.materialise_campaign(campaign.pk, batch_size=1, budget_seconds=0)
    assert (result.batches, result.continued, result.materialised) == (1, True, False)
    queued = DBTaskResult.objects.filter(task_path="storeloop.messaging.tasks.materialise_campaign")
    assert queued.count() == before + 1
    assert queued.order_by("-enqueued_at").first().args_kwargs == {
        "args": [str(campaign.pk), "continuation"],
        "kwargs": {},
    }


def test_the_first_run_of_the_task_hands_over_to_sending_after_one_batch(store: Any, news: Any) -> None:
    """The worker task's first run inserts one batch (1,000) and queues the rest behind the drain
    it asked for; the continuation inserts the rest."""
    from storeloop.messaging.tasks import materialise_campaign

    bulk_audience(store, 1200)
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    DBTaskResult.objects.all().delete()
    first = materialise_campaign.call(str(campaign.pk))
    assert (first["batches"], first["messages"], first["continued"], first["materialised"]) == (1, 1000, True, False)
    paths = list(DBTaskResult.objects.order_by("enqueued_at").values_list("task_path", flat=True))
    assert paths == ["storeloop.messaging.tasks.dispatch_messages", "storeloop.messaging.tasks.materialise_campaign"]
    assert DBTaskResult.objects.get(task_path=paths[1]).args_kwargs["args"] == [str(campaign.pk), "continuation"]
    rest = materialise_campaign.call(str(campaign.pk), "continuation")
    assert (rest["messages"], rest["continued"], rest["materialised"]) == (200, False, True)
    assert Message.objects.filter(campaign_id=campaign.pk).count() == 1200


def test_a_second_starting_run_also_hands_over_after_one_batch(store: Any, news: Any) -> None:
    """The scheduler's tick queues a starting run of its own when it starts a due campaign, beside
    the timed one: whichever runs second must not insert the whole audience ahead of the drain
    (it did, when the first batch on record made a run a continuation)."""
    from storeloop.messaging.tasks import materialise_campaign

    bulk_audience(store, 2500)
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    DBTaskResult.objects.all().delete()
    first = materialise_campaign.call(str(campaign.pk))
    second = materialise_campaign.call(str(campaign.pk))
    assert [(run["messages"], run["continued"]) for run in (first, second)] == [(1000, True), (1000, True)]
    assert Message.objects.filter(campaign_id=campaign.pk).count() == 2000
    rest = materialise_campaign.call(str(campaign.pk), "continuation")
    assert (rest["messages"], rest["materialised"]) == (500, True)


def test_a_starting_run_goes_on_past_batches_of_people_left_out(store: Any, news: Any) -> None:
    """A batch of people without consent inserts nothing: the starting run goes on until it has
    something to send (else the campaign's first messages would wait for the continuation)."""
    from storeloop.messaging.tasks import materialise_campaign

    Contact.objects.bulk_create(Contact(store=store, email=f"n{i:04}@example.com") for i in range(1500))
    bulk_audience(store, 1200)
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    DBTaskResult.objects.all().delete()
    first = materialise_campaign.call(str(campaign.pk))
    assert (first["batches"], first["messages"], first["continued"]) == (2, 500, True)  # 1,000 out, then 500 of 1,000
    rest = materialise_campaign.call(str(campaign.pk), "continuation")
    assert (rest["messages"], rest["materialised"]) == (700, True)


def test_batches_are_a_fixed_number_of_queries(store: Any, news: Any) -> None:
    for i in range(30):
        person(store, f"p{i:02}", consent=("email",))
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    manager.materialise_campaign(campaign.pk, batch_size=5, should_stop=lambda: True)  # starts it
    with CaptureQueriesContext(connection) as small:
        manager.materialise_campaign(campaign.pk, batch_size=5, should_stop=lambda: True)
    with CaptureQueriesContext(connection) as large:
        manager.materialise_campaign(campaign.pk, batch_size=15, should_stop=lambda: True)
    assert len(small) == len(large)  # no query per contact
    assert Message.objects.count() == 25


def test_a_scheduled_campaign_without_a_published_template_pauses_and_says_why(store: Any, news: Any) -> None:
    person(store, "ann", consent=("email",))
    campaign = manager.create_campaign(store, name="News", template_key="news", channel="email", audience=EVERYONE)
    manager.schedule_campaign(campaign, dt.datetime.now(dt.UTC))
    news.template.published = None
    news.template.save()
    manager.materialise_campaign(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.state == "paused"
    assert campaign.last_error == "no published email template 'news' for en: publish it, then resume"
    assert not Message.objects.exists()
    TemplateRepository().publish(news)
    assert manager.resume_campaign(campaign).state == "scheduled"
    assert manager.materialise_campaign(campaign.pk).messages == 1
    campaign.refresh_from_db()
    assert (campaign.state, campaign.last_error, campaign.template_id) == ("running", "", news.pk)


def test_an_audience_that_no_longer_validates_pauses_the_campaign(store: Any, news: Any) -> None:
    person(store, "ann", consent=("email",))
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    Campaign.objects.filter(pk=campaign.pk).update(audience={"field": "rfm_segment", "op": "eq", "value": "gone"})
    result = manager.materialise_campaign(campaign.pk)
    assert (result.state, result.batches, result.messages) == ("paused", 0, 0)
    campaign.refresh_from_db()
    assert campaign.last_error.startswith("cannot materialise: invalid audience at (root): unknown segment 'gone'")
    assert not Message.objects.exists()


def test_scheduling_checks_the_time_and_the_state(store: Any, news: Any) -> None:
    campaign = manager.create_campaign(store, name="News", template_key="news", channel="email", audience=EVERYONE)
    with pytest.raises(ValidationError) as past:
        manager.schedule_campaign(campaign, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert past.value.code == "schedule_in_past"
    with pytest.raises(ValidationError) as naive:
        manager.schedule_campaign(campaign, dt.datetime(2030, 1, 1, 10, 0))
    assert naive.value.code == "naive_datetime"
    campaign.refresh_from_db()
    assert (campaign.state, campaign.scheduled_at) == ("draft", None)
    manager.cancel_campaign(campaign)
    with pytest.raises(CampaignStateError) as state:
        manager.schedule_campaign(campaign, dt.datetime(2030, 1, 1, 10, 0, tzinfo=dt.UTC))
    expected = f"campaign {campaign.pk} is cancelled; only draft or scheduled campaigns can be scheduled"
    assert state.value.message == expected
    assert state.value.status_code == 409


def test_creating_checks_template_audience_and_fields(store: Any, other_store: Any, news: Any) -> None:
    def code(**fields: Any) -> str:
        base = {"name": "News", "template_key": "news", "channel": "email", "audience": EVERYONE}
        with pytest.raises(ValidationError) as caught:
            manager.create_campaign(store, **{**base, **fields})
        return caught.value.code

    assert code(template_key="nope") == "template_not_found"
    assert code(channel="sms") == "template_not_found"
    assert code(channel="fax") == "invalid_channel"
    assert code(purpose="spam") == "invalid_purpose"
    assert code(name=" ") == "invalid_name"
    assert code(audience={"field": "country"}) == "invalid_audience"
    assert code(custom={"not a name": 1}) == "invalid_custom"
    assert code(custom={"blob": "x" * 5000}) == "invalid_custom"
    with pytest.raises(ValidationError):
        manager.create_campaign(other_store, name="N", template_key="news", channel="email", audience=EVERYONE)
    assert not Campaign.objects.exists()
