"""A store's messages/s holds across worker processes: one paced schedule in the database.

Each ``PacedRateLimiter`` instance stands for one process (its reserved slots are its own); the
last test runs two real worker processes against the fake Twilio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection as db_connection

from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.core.models import RateLimitBucket
from storeloop.core.ratelimit import AllOf, PacedRateLimiter
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.messaging.channels.connections import connect_smtp, connect_twilio
from storeloop.messaging.channels.factory import account_key, account_rate, channel_for, close_channels
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.models import Message, MessagingConnection
from storeloop.messaging.templates import TemplateRepository

KEY = "messaging:1:sms"
T0 = 1_780_000_000.0


class Clock:
    """A hand-moved clock; ``sleep`` records the wait and moves nothing (each limiter has its own list)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def waits() -> list[float]:
    return []


def limiter(clock: Clock, sleeps: list[float], rate: float = 10.0, key: str = KEY) -> PacedRateLimiter:
    return PacedRateLimiter(key, rate, clock=clock, sleep=sleeps.append)


@pytest.mark.django_db
def test_two_processes_of_one_store_share_one_schedule() -> None:
    clock, a_waits, b_waits, other_waits = Clock(), waits(), waits(), waits()
    a, b = limiter(clock, a_waits), limiter(clock, b_waits)
    other_store = limiter(clock, other_waits, key="messaging:2:sms")
    for one in (a, b, a, b, other_store):
        one.acquire()
    assert a_waits == [pytest.approx(0.2)]  # its first slot was free at once, its second is the third overall
    assert b_waits == [pytest.approx(0.1), pytest.approx(0.3)]
    assert other_waits == []  # another store's rate is its own
    assert RateLimitBucket.objects.get(key=KEY).blocked_until.timestamp() == pytest.approx(T0 + 0.4, abs=1e-4)


@pytest.mark.django_db
def test_a_providers_rate_limit_holds_back_every_process() -> None:
    clock, a_waits, b_waits = Clock(), waits(), waits()
    a, b = limiter(clock, a_waits), limiter(clock, b_waits)
    a.acquire()
    a.penalize(5.0)
    b.acquire()
    assert b_waits == [pytest.approx(5.0)]


@pytest.mark.django_db
def test_slots_are_never_spent_late() -> None:
    clock, a_waits, b_waits = Clock(), waits(), waits()
    a, b = limiter(clock, a_waits, rate=1000), limiter(clock, b_waits, rate=1000)
    assert a.prefetch == 50  # 50 ms worth per reservation: one short transaction per 50 sends
    a.acquire()
    clock.now += 10  # idle: its other 49 slots have passed
    a.acquire()
    b.acquire()
    assert a_waits == []  # a fresh slot now, not a stale one bunched against b's
    assert b_waits == [pytest.approx(0.05)]  # after the slots a reserved at the same moment


@pytest.mark.django_db
def test_a_process_slower_than_the_rate_spends_its_reservation_instead_of_going_back_for_more() -> None:
    clock, a_waits = Clock(), waits()
    a = limiter(clock, a_waits, rate=1000)  # a slot every 1 ms, 50 per reservation
    for _ in range(50):
        a.acquire()
        clock.now += 0.002  # each send takes 2 ms: slot n is reached n ms late
    assert a_waits == []
    # One reservation served all 50 sends (the schedule moved once, by 50 slots).
    assert RateLimitBucket.objects.get(key=KEY).blocked_until.timestamp() == pytest.approx(T0 + 0.05, abs=1e-4)
    a.acquire()  # the 51st needs a new reservation, from now on
    assert RateLimitBucket.objects.get(key=KEY).blocked_until.timestamp() == pytest.approx(clock.now + 0.05, abs=1e-4)


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        PacedRateLimiter(KEY, 0)


# How much later than its slot the first send may reach the fake, beyond the limiter's tolerance:
# a new connection's set-up, and a loaded machine (0.05 s was once exceeded by 0.06 s in a full CI run).
FIRST_SEND_JITTER = 0.25


def assert_paced(times: list[float], rate: int, *, jitter: float = 0.25) -> None:
    """No more than ``rate`` in any one-second window, give or take scheduling jitter: slots are
    paced, but a send the OS delays lands next to the following one (seen at 0.09 s on a loaded
    2-core machine). Without a shared limit two senders make ``2 * rate`` per second, far outside."""
    times = sorted(times)
    for first, later in zip(times, times[rate:], strict=False):
        assert later - first >= 1.0 - jitter, f"{rate + 1} sends within {later - first:.3f} s"


@pytest.mark.django_db(transaction=True)
def test_two_threads_with_their_own_limiters_stay_within_the_rate_together() -> None:
    rate, each = 20, 15
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        own = PacedRateLimiter(KEY, rate)  # its own slots, like a separate process
        try:
            for _ in range(each):
                own.acquire()
                with lock:
                    times.append(time.time())
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(times) == 2 * each
    assert_paced(times, rate)
    # Never early; the first slot may be spent up to the tolerance late (the documented bound).
    assert max(times) - min(times) >= (2 * each - 1) / rate - PacedRateLimiter.LATE_TOLERANCE - 0.05


# --- two real worker processes ---------------------------------------------------------------------

WORKER = """
import json, os, sys, time
from collections import Counter

import django

django.setup()
from storeloop.messaging.channels.factory import channel_for
from storeloop.messaging.dispatcher import MessageDispatcher

print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
dispatcher, total = MessageDispatcher(channel_for), Counter()
while counts := dispatcher.process_queue(batch_size=5):
    total += counts
print(json.dumps(total), flush=True)
"""


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(seed=8) as fake:
        yield fake
    close_channels()


def start(db_url: str, go: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "STORELOOP_DATABASE_URL": db_url, "STORELOOP_LOG_LEVEL": "WARNING",
           "DJANGO_SETTINGS_MODULE": "storeloop.config.settings"}  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", WORKER, str(go)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip


def read_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    assert box, "the worker said nothing in time"
    return box[0].strip()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_together_send_at_the_stores_rate(
    store: Any, twilio: FakeTwilio, sqlite_or_pg_url: str, tmp_path: Path
) -> None:
    rate, count = 10, 30
    connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                   from_number=twilio.from_number, base_url=twilio.url, messages_per_second=rate,
                   status_callback="http://127.0.0.1:9/none")  # fmt: skip
    repo = TemplateRepository()
    version = repo.save_template(store, "cod", "sms", body_text="Your parcel arrives today")
    repo.publish(version)
    dispatcher = MessageDispatcher(lambda s, c: pytest.fail("the test process sends nothing"))
    for i in range(count):
        contact = Contact.objects.create(store=store, phone=f"+49151123456{i:02}", country="DE")
        dispatcher.queue_message(store=store, contact=contact, channel="sms", purpose="transactional",
                                 template=version, dedupe_key=f"cod-{i}")  # fmt: skip
    go = tmp_path / "go"
    workers = [start(sqlite_or_pg_url, go) for _ in range(2)]
    try:
        assert [read_line(w) for w in workers] == ["ready", "ready"]
        go.touch()
        totals = [Counter(json.loads(read_line(w))) for w in workers]
        for worker in workers:
            assert worker.wait(30) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert sum(totals, Counter()) == Counter({"sent": count})
    assert all(t["sent"] > 0 for t in totals), f"one worker did everything: {totals}"  # they really raced
    sends = [r.at for r in twilio.requests if r.method == "POST" and r.path.endswith("/Messages.json")]
    assert len(sends) == count
    assert_paced(sends, rate)
    # Slots are never spent early; the first may be spent up to the limiter's tolerance late (and
    # reach the fake a connection set-up later): the documented bound, plus jitter. (Two workers
    # each at the rate would take half as long: 1.45 s.)
    assert max(sends) - min(sends) >= (count - 1) / rate - PacedRateLimiter.LATE_TOLERANCE - FIRST_SEND_JITTER
    assert {twilio.sent_count(f"+49151123456{i:02}") for i in range(count)} == {1}
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


# --- a provider account shared by several stores ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_stores_on_one_provider_account_together_stay_within_the_accounts_rate(
    store: Any, other_store: Any, twilio: FakeTwilio
) -> None:
    """An agency's two shops on one Twilio account: each may send 100/s, the account 20/s. The
    dispatcher sends both shops' parts side by side; together they keep the account's rate."""
    account_rate, each = 20, 15
    repo, dispatcher = TemplateRepository(), MessageDispatcher(channel_for)
    for n, shop in enumerate((store, other_store)):
        connect_twilio(store_id=shop.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                       from_number=twilio.from_number, base_url=twilio.url, messages_per_second=100,
                       account_messages_per_second=account_rate, status_callback="http://127.0.0.1:9/none")  # fmt: skip
        version = repo.save_template(shop, "cod", "sms", body_text="Your parcel arrives today")
        repo.publish(version)
        for i in range(each):
            contact = Contact.objects.create(store=shop, phone=f"+4915112345{n}{i:02}", country="DE")
            dispatcher.queue_message(store=shop, contact=contact, channel="sms", purpose="transactional",
                                     template=version, dedupe_key=f"cod-{i}")  # fmt: skip
    assert dispatcher.process_queue(batch_size=100) == Counter({"sent": 2 * each})
    sends = [r.at for r in twilio.requests if r.method == "POST" and r.path.endswith("/Messages.json")]
    assert len(sends) == 2 * each
    assert_paced(sends, account_rate)  # at each shop's own 100/s the 30 would take 0.15 s
    least = (2 * each - 1) / account_rate - PacedRateLimiter.LATE_TOLERANCE - FIRST_SEND_JITTER
    assert max(sends) - min(sends) >= least


@pytest.mark.django_db
def test_all_of_waits_for_a_slot_of_each_budget_and_a_429_moves_each_back() -> None:
    clock, account_waits, store_waits = Clock(), waits(), waits()
    account = limiter(clock, account_waits, rate=2, key="messaging-account:twilio:x")
    both = AllOf(account, limiter(clock, store_waits, rate=10))
    both.acquire()
    both.acquire()
    assert (account_waits, store_waits) == ([pytest.approx(0.5)], [pytest.approx(0.1)])
    both.penalize(5.0)
    blocked = dict(RateLimitBucket.objects.values_list("key", "blocked_until"))
    assert {key: at.timestamp() for key, at in blocked.items()} == {
        "messaging-account:twilio:x": pytest.approx(T0 + 5),
        KEY: pytest.approx(T0 + 5),
    }


@pytest.mark.django_db
def test_the_account_key_names_the_provider_account_not_the_store(store: Any, other_store: Any) -> None:
    def sms(shop: Any, sid: str) -> MessagingConnection:
        return connect_twilio(store_id=shop.pk, account_sid=sid, auth_token="token", from_number="+15005550006",
                              account_messages_per_second=5)  # fmt: skip

    def smtp(shop: Any, host: str, username: str) -> MessagingConnection:
        return connect_smtp(store_id=shop.pk, host=host, port=587, username=username, password="pw" if username else "",
                            from_addr="shop@example.com", account_messages_per_second=5)  # fmt: skip

    sid, other_sid = "AC" + "1" * 32, "AC" + "2" * 32
    shared = account_key(sms(store, sid))
    assert shared.startswith("messaging-account:twilio:")
    assert sid not in shared
    assert account_key(sms(other_store, sid)) == shared
    assert account_key(sms(other_store, other_sid)) != shared
    relay = account_key(smtp(store, "smtp.relay.example", "agency"))
    assert account_key(smtp(other_store, "SMTP.Relay.example", "agency")) == relay
    assert account_key(smtp(other_store, "smtp.relay.example", "another-login")) != relay
    connection = MessagingConnection.objects.get(store=store, channel="sms")
    assert (account_rate(connection), connection.settings["account_messages_per_second"]) == (5.0, 5.0)


@pytest.mark.django_db
@pytest.mark.parametrize("rate", [0, -1, 10_001])
def test_an_account_rate_out_of_bounds_is_refused_and_nothing_is_stored(store: Any, rate: float) -> None:
    with pytest.raises(ValidationError) as refused:
        connect_twilio(store_id=store.pk, account_sid="AC" + "1" * 32, auth_token="token",
                       from_number="+15005550006", account_messages_per_second=rate)  # fmt: skip
    assert (refused.value.code, refused.value.details) == ("invalid_rate", [{"field": "account_messages_per_second"}])
    assert not MessagingConnection.objects.exists()


@pytest.mark.django_db
def test_without_an_account_rate_a_connection_is_paced_by_its_stores_rate_alone(store: Any) -> None:
    connection = connect_twilio(store_id=store.pk, account_sid="AC" + "1" * 32, auth_token="token",
                                from_number="+15005550006", messages_per_second=7)  # fmt: skip
    assert account_rate(connection) is None
    assert "account_messages_per_second" not in connection.settings
    limiter = channel_for(store, "sms").client.limiter  # type: ignore[attr-defined]
    assert isinstance(limiter, PacedRateLimiter)
    assert (limiter.key, limiter.per_second) == (f"messaging:{store.pk}:sms", 7)
