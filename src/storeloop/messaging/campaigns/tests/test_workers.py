"""Real ``storeloop worker`` and ``storeloop scheduler`` processes deliver campaigns end to end to
the fake SMTP relay and the fake Twilio, and a worker killed in the middle of a campaign's
materialisation, or while its texts are with Twilio, leaves every recipient with exactly one message;
one killed while its e-mails are with the relay leaves unknown only the groups it was sending."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.tests.conftest import bulk_audience, person, publish
from storeloop.messaging.channels.connections import connect_smtp, connect_twilio
from storeloop.messaging.channels.factory import channel_for
from storeloop.messaging.dispatcher import CLAIM, LOST_BEFORE_CALL, reap_stuck_sends
from storeloop.messaging.handover import HANDOVER_GROUP
from storeloop.messaging.manager import MessagingManager
from storeloop.messaging.models import HandOver, Message
from storeloop.messaging.policies import quiet_until, zone_for
from storeloop.messaging.settlement import settle_unknown_sends

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("channels_closed")]
EVERYONE: dict[str, Any] = {"all": []}
MATERIALISE = "storeloop.messaging.tasks.materialise_campaign"
# Numbers in zones spread around the clock: the SMS test uses one where it is daytime now, so
# marketing quiet hours (21:00-08:00 local) do not delay it.
PHONE_PREFIXES = ["+49151123456", "+8190123456", "+121273601", "+121362100", "+9198765432"]


def spawn(db_url: str, *argv: str, **env: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "STORELOOP_DATABASE_URL": db_url, "STORELOOP_LOG_LEVEL": "WARNING",
                   "STORELOOP_PUBLIC_URL": "https://loop.example", **env}  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "storeloop.cli.main", *argv], env=environment,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        stop(proc)


def situation() -> str:
    """What the database says, for a failure message."""
    campaigns = list(Campaign.objects.values_list("pk", "state", "cursor", "materialised_at", "last_error"))
    messages = Counter(Message.objects.values_list("status", "reason", "last_error"))
    tasks = Counter(DBTaskResult.objects.values_list("task_path", "status"))
    return f"campaigns {campaigns}; messages {dict(messages)}; tasks {dict(tasks)}"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {situation()}")
        time.sleep(0.1)


def daytime_prefix() -> str:
    now = timezone.now()
    for prefix in PHONE_PREFIXES:
        zone = zone_for(prefix + "01", "")
        assert zone.key != "UTC", prefix
        if all(quiet_until(now + dt.timedelta(minutes=m), zone) is None for m in (0, 15)):
            return prefix
    raise AssertionError("no daytime zone among the test numbers")


def test_worker_and_scheduler_deliver_campaigns_and_single_messages(
    store: Any, smtp: FakeSmtpServer, twilio: FakeTwilio, sqlite_or_pg_url: str, processes: list[Any]
) -> None:
    connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none", from_addr="shop@shop.example",
                 messages_per_second=1000)  # fmt: skip
    connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                   from_number=twilio.from_number, base_url=twilio.url, messages_per_second=1000)  # fmt: skip
    publish(store, "news", "email", subject="News for {{ contact.first_name }}", body_text="Hello!")
    publish(store, "sale", "sms", body_text="{{ contact.first_name }}: 20% off this week")
    publish(store, "receipt", "email", subject="Your receipt", body_text="Thanks!")
    prefix = daytime_prefix()
    readers = [person(store, f"r{i:02}", country="DE", consent=("email",)) for i in range(40)]
    texters = [person(store, f"t{i:02}", phone=f"{prefix}{i:02}", consent=("sms",)) for i in range(20)]
    buyer = person(store, "buyer")

    manager = MessagingManager()
    news = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)
    sale = manager.create_campaign(store, name="Sale", template_key="sale", channel="sms", audience=EVERYONE)
    manager.schedule_campaign(sale, timezone.now() + dt.timedelta(seconds=2))
    manager.send_templated_message(store, buyer, "receipt", "email", "transactional", {}, "order-7-receipt")

    env = {"STORELOOP_TASK_LEASE_SECONDS": "8"}
    processes.append(spawn(sqlite_or_pg_url, "worker", "--interval", "0.05", **env))
    processes.append(spawn(sqlite_or_pg_url, "scheduler", "--tick", "0.2", **env))

    def done() -> bool:
        return Campaign.objects.filter(state="completed").count() == 2 and len(smtp.messages) >= 41

    wait_for(done, 90, "both campaigns to complete")
    assert Counter(m.rcpt_tos[0] for m in smtp.messages) == Counter({c.email: 1 for c in [*readers, buyer]})
    assert [twilio.sent_count(c.phone) for c in texters] == [1] * 20
    assert twilio.duplicates() == []
    assert Message.objects.filter(status="sent").count() == 61
    for campaign, count in [(news, 40), (sale, 20)]:
        figures = manager.campaign_figures(campaign)
        # Everyone without consent on the channel was kept out: 61 contacts in each audience.
        assert (figures.targeted, figures.sent, figures.suppressed, figures.queued) == (61, count, 61 - count, 0)


def test_a_worker_killed_mid_campaign_leaves_everyone_with_exactly_one_message(
    store: Any, news: Any, smtp: FakeSmtpServer, sqlite_or_pg_url: str, processes: list[Any]
) -> None:
    # Six materialisation batches: the first run inserts one and hands over to the drain it asked
    # for; the kill lands in the continuation, which inserts the other five.
    size = 5500
    connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none", from_addr="shop@shop.example",
                 messages_per_second=1000)  # fmt: skip
    contacts = bulk_audience(store, size)
    manager = MessagingManager()
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)

    first = spawn(sqlite_or_pg_url, "worker", "--interval", "0.02", "--lease-seconds", "2")
    processes.append(first)
    deadline = time.monotonic() + 60
    batch = 1000  # materialise.BATCH_SIZE
    while not Campaign.objects.filter(pk=campaign.pk, cursor__gt=contacts[batch].pk).exists():
        assert time.monotonic() < deadline, "the worker never resumed the materialisation"
        time.sleep(0.002)
    os.killpg(first.pid, signal.SIGSTOP)  # frozen where it is: look, then kill it without a goodbye
    campaign.refresh_from_db()
    in_flight = Message.objects.filter(status="sending").count()
    assert campaign.materialised_at is None, "materialisation finished before the kill: nothing was tested"
    assert in_flight == 0  # one worker: while it materialises it is not inside a provider call
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    materialised_before = Message.objects.filter(campaign_id=campaign.pk).count()
    assert 0 < materialised_before < size
    running = DBTaskResult.objects.get(task_path=MATERIALISE, status=TaskResultStatus.RUNNING)

    # The scheduler reaps the dead worker's task; a new worker resumes from the committed cursor.
    env = {"STORELOOP_TASK_LEASE_SECONDS": "8"}
    processes.append(spawn(sqlite_or_pg_url, "scheduler", "--tick", "0.2", **env))
    processes.append(spawn(sqlite_or_pg_url, "worker", "--interval", "0.02", **env))
    wait_for(lambda: Campaign.objects.filter(pk=campaign.pk, state="completed").exists(), 120, "the campaign")

    assert Counter(m.rcpt_tos[0] for m in smtp.messages) == Counter({c.email: 1 for c in contacts})
    assert set(smtp.count_by_message_id().values()) == {1}
    assert Message.objects.filter(campaign_id=campaign.pk, status="sent").count() == size
    figures = manager.campaign_figures(campaign)
    assert (figures.targeted, figures.sent, figures.suppressed, figures.queued, figures.messages) == (
        size, size, 0, 0, size
    )  # fmt: skip
    assert set(DBTaskResult.objects.filter(task_path=MATERIALISE).values_list("status", flat=True)) == {
        TaskResultStatus.SUCCESSFUL
    }
    running.refresh_from_db()
    assert len(running.worker_ids) == 2  # the killed attempt, then the one that finished


def test_a_worker_killed_while_its_texts_are_with_twilio_leaves_everyone_with_exactly_one_text(
    store: Any, twilio: FakeTwilio, sqlite_or_pg_url: str, processes: list[Any]
) -> None:
    size = 60
    connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                   from_number=twilio.from_number, base_url=twilio.url, messages_per_second=1000)  # fmt: skip
    publish(store, "sale", "sms", body_text="{{ contact.first_name }}: 20% off this week")
    prefix = daytime_prefix()
    texters = [person(store, f"t{i:02}", phone=f"{prefix}{i:02}", consent=("sms",)) for i in range(size)]
    twilio.faults.update({"latency_ms": 40})  # the batch takes ~0.6 s at Twilio: time to kill it there
    manager = MessagingManager()
    campaign = manager.send_bulk_message(store, template_key="sale", channel="sms", audience=EVERYONE)

    first = spawn(sqlite_or_pg_url, "worker", "--interval", "0.02")
    processes.append(first)
    wait_for(lambda: len(twilio.messages) >= 10, 60, "the first texts at Twilio")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)  # requests already on the wire finish at the fake
    in_flight = Message.objects.filter(status="sending").count()
    recorded = Message.objects.filter(status="sent").count()
    reached = len(twilio.messages)
    assert in_flight > 0, "the kill missed the sending: nothing was tested"
    assert reached < size, "every text was at Twilio before the kill: nothing was tested"

    # What the scheduler's jobs do once the dead worker's claim ran out (reap_stuck_sends, after
    # ten minutes) and the settlement's grace passed (settle_unknown_sends, two minutes).
    assert reap_stuck_sends(older_than=-CLAIM) == in_flight  # never handed over: queued again; others unknown
    unknown = Message.objects.filter(status="unknown").count()
    settled = settle_unknown_sends(channel_for, grace=dt.timedelta(0))
    assert settled == Counter({"sent": reached - recorded, "requeued": unknown - (reached - recorded)})

    twilio.faults.update({"latency_ms": 0})
    env = {"STORELOOP_TASK_LEASE_SECONDS": "8"}
    processes.append(spawn(sqlite_or_pg_url, "scheduler", "--tick", "0.2", **env))
    processes.append(spawn(sqlite_or_pg_url, "worker", "--interval", "0.02", **env))
    wait_for(lambda: Campaign.objects.filter(pk=campaign.pk, state="completed").exists(), 60, "the campaign")
    wait_for(lambda: Message.objects.filter(status="sent").count() == size, 60, "every text sent")
    assert [twilio.sent_count(c.phone) for c in texters] == [1] * size
    assert twilio.duplicates() == []
    assert sorted(Message.objects.values_list("provider_message_id", flat=True)) == sorted(
        m.sid for m in twilio.messages
    )


def test_a_worker_killed_while_its_emails_are_with_the_relay_costs_at_most_the_groups_it_was_sending(
    store: Any, news: Any, smtp: FakeSmtpServer, sqlite_or_pg_url: str, processes: list[Any]
) -> None:
    """An SMTP relay cannot be asked what it took. The groups the sending threads had handed over
    become ``unknown`` (never resent); everything the threads had not reached is sent by the next
    worker, everything recorded sent is never sent again."""
    size = 1200  # three batches of the drain: the kill lands in the second, the third prepared or waiting
    connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none", from_addr="shop@shop.example",
                 messages_per_second=1000)  # fmt: skip
    contacts = bulk_audience(store, size)
    smtp.latency_ms = 10  # ~30 ms per message and session: the batch takes seconds at the relay
    manager = MessagingManager()
    campaign = manager.send_bulk_message(store, template_key="news", channel="email", audience=EVERYONE)

    first = spawn(sqlite_or_pg_url, "worker", "--interval", "0.02")
    processes.append(first)
    wait_for(lambda: len(smtp.messages) >= 560, 60, "the second batch at the relay")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)  # what was on the wire reaches the fake
    sending = set(Message.objects.filter(status="sending").values_list("pk", flat=True))
    entries = list(HandOver.objects.values_list("handed", "accepted"))
    named = {pk for handed, _ in entries for pk in handed} & sending
    accepted = {int(pk) for _, sends in entries for pk in sends} & sending
    reached = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert sending - named, "every e-mail was handed over before the kill: nothing was tested"
    # Per sending thread (4 per connection): the group being sent, the next one (named ahead) and
    # the one before, if the entry recording its accepted sends had not landed.
    assert 0 < len(named - accepted) <= 3 * 4 * HANDOVER_GROUP

    assert reap_stuck_sends(older_than=-CLAIM) == len(sending)
    unknown = set(Message.objects.filter(status="unknown").values_list("contact__email", flat=True))
    assert len(unknown) == len(named - accepted)
    assert Message.objects.filter(status="queued", reason=LOST_BEFORE_CALL).count() == len(sending - named)
    recorded = set(Message.objects.filter(status="sent").values_list("contact__email", flat=True))
    assert recorded <= set(reached)  # what is on record as sent (the journal's accepted too) was sent

    smtp.latency_ms = 0
    env = {"STORELOOP_TASK_LEASE_SECONDS": "8"}
    processes.append(spawn(sqlite_or_pg_url, "scheduler", "--tick", "0.2", **env))
    processes.append(spawn(sqlite_or_pg_url, "worker", "--interval", "0.02", **env))
    wait_for(lambda: Campaign.objects.filter(pk=campaign.pk, state="completed").exists(), 60, "the campaign")
    received = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert {c.email: received[c.email] for c in contacts if c.email not in unknown} == {
        c.email: 1 for c in contacts if c.email not in unknown
    }
    assert {received[email] for email in unknown} <= {0, 1}  # each one at most once, whatever the relay took
    assert set(smtp.count_by_message_id().values()) == {1}
    assert Message.objects.filter(status="sent").count() == size - len(unknown)
