"""Dispatch throughput: a marketing campaign to N recipients (half e-mail, half SMS) over the fake
SMTP relay and the fake Twilio, end to end on SQLite, as production runs it.

Per run, in a fresh data dir:

1. the fake SMTP server and the fake Twilio each run in their own process; N contacts with
   marketing consent (e-mail for one half, SMS for the other, phone numbers in a time zone where
   it is daytime now, so SMS quiet hours do not delay them) and the two connections are seeded;
2. **provider capacity** (the same-run baseline): bare clients — ``smtplib`` on reused
   connections and the keep-alive HTTP client (``integrations.keepalive``, what the Twilio client
   uses) posting to the Messages API, with the dispatcher's concurrency —
   blast both fakes at once from separate processes with the campaigns' own messages (the e-mail
   and the SMS form the dispatcher sends, built once by ``campaign_payloads``); messages/s
   accepted by the fakes. Measured
   before step 3 and again after step 4 (workers stopped), and averaged: a shared machine's speed
   drifts over the minutes of a run, and a single blast of a few seconds caught it up to 1.8x apart;
3. **end to end**: ``storeloop worker`` processes (every queue but order sync: no shop stands
   behind the bench store) and ``storeloop scheduler`` run; the timer starts
   when ``MessagingManager.send_bulk_message`` queues the two campaigns and stops when every
   message is sent: audience query, consent filter, materialisation, claims, the consent gate at
   send time, caps, rendering, unsubscribe links, rate limits, the provider calls, outcomes.
   Then the fakes must hold exactly one message per recipient;
4. **naive**: for comparison, M transactional messages sent by one task per message
   (``messaging.tasks.send_message``, what a per-message design does) through the same workers.

Twilio's delivery callbacks are held back past the run (the webhook ingest benchmark measures
that path). Targets (2 cores, SQLite): >= 2,000 messages/s end to end, ratio to the providers'
capacity >= 0.5. The last line of output is JSON.

    .venv/bin/python bench/dispatch.py [--recipients 100000] [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    STORELOOP,
    ServerProcess,
    free_port,
    machine_busy_fraction,
    machine_cpu_seconds,
    machine_info,
    own_cpu_seconds,
    pid_cpu_seconds,
    print_json_line,
    run_storeloop,
    storeloop_env,
    temp_data_dir,
)

TARGET_PER_S = 2000.0
TARGET_RATIO = 0.5
CONCURRENCY = 4  # the dispatcher's sending threads per process
# Mobile number ranges with 10^7+ numbers each, in zones around the clock: the run picks one where
# it is daytime now, so marketing SMS quiet hours (21:00-08:00 local) do not hold messages back.
PHONE_RANGES = ["+49151123", "+8190123", "+121255", "+9198765", "+55119876", "+614123"]


# --- the fakes, each in its own process --------------------------------------------------------


def _fake_main(kind: str, conn: Connection) -> None:
    if kind == "smtp":
        from storeloop.integrations.smtp.fake import FakeSmtpServer

        smtp = FakeSmtpServer().start()
        conn.send({"host": smtp.host, "port": smtp.port})
        while conn.recv() != "stop":
            recipients = [r for m in smtp.messages for r in m.rcpt_tos]
            conn.send({"messages": len(smtp.messages), "distinct": len(set(recipients)), "recipients": recipients})
        smtp.stop()
    else:
        from storeloop.integrations.twilio.fake import FakeTwilio

        twilio = FakeTwilio(seed=5)
        twilio.faults.update({"callback_delay_ms": 3_600_000})  # status callbacks after the run
        twilio.start()
        conn.send({"url": twilio.url, "account_sid": twilio.account_sid, "auth_token": twilio.auth_token,
                   "from_number": twilio.from_number})  # fmt: skip
        while conn.recv() != "stop":
            recipients = [m.to for m in twilio.messages]
            conn.send({"messages": len(recipients), "distinct": len(set(recipients)), "recipients": recipients})
        twilio.stop()
    conn.close()


class Fake:
    def __init__(self, kind: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_fake_main, args=(kind, child), name=f"fake-{kind}", daemon=True)
        self.proc.start()
        self.info: dict[str, Any] = self.conn.recv()

    def stats(self) -> dict[str, Any]:
        self.conn.send("stats")
        result: dict[str, Any] = self.conn.recv()
        return result

    def stop(self) -> None:
        if self.proc.is_alive():
            self.conn.send("stop")
            self.proc.join(30)


# --- provider capacity: bare clients ------------------------------------------------------------


def _blast_smtp(host: str, port: int, payload: bytes, count: int, threads: int, conn: Connection) -> None:
    import smtplib
    from concurrent.futures import ThreadPoolExecutor

    # The campaign's e-mail, built once (``campaign_payloads``) and sent as bytes: the capacity of
    # the fake, not of a client's MIME writer.
    def run(worker: int) -> int:
        sent = 0
        with smtplib.SMTP(host, port, timeout=30) as client:
            for n in range(worker, count, threads):
                client.sendmail("shop@shop.example", [f"raw{n}@bench.example"], payload)
                sent += 1
        return sent

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sent = sum(pool.map(run, range(threads)))
    conn.send((sent, time.perf_counter() - started, own_cpu_seconds()))


def _blast_twilio(info: dict[str, Any], form: dict[str, str], count: int, threads: int, conn: Connection) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from storeloop.integrations.keepalive import KeepAliveClient

    # The same lean keep-alive client the dispatcher's Twilio client uses (ADR 8), without the
    # validation, limiter and result parsing around it.
    path = f"/2010-04-01/Accounts/{info['account_sid']}/Messages.json"
    client = KeepAliveClient(info["url"], auth=(info["account_sid"], info["auth_token"]), timeout=30)

    def run(worker: int) -> int:
        sent = 0
        for n in range(worker, count, threads):
            response = client.request("POST", path, data={**form, "To": f"+4915199{n:06d}"})
            if response.status_code != 201:
                raise RuntimeError(f"the fake Twilio answered {response.status_code}")
            sent += 1
        return sent

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sent = sum(pool.map(run, range(threads)))
    conn.send((sent, time.perf_counter() - started, own_cpu_seconds()))
    client.close()


def campaign_payloads(store: Any) -> tuple[bytes, dict[str, str]]:
    """What the dispatcher puts on the wire for one recipient of each campaign, built with its own
    pieces (template, signed links, preference footer, MIME writer; the SMS form with the status
    callback that carries our key), for the capacity blasts to send: the fakes' capacity for the
    campaign's messages, not for a smaller stand-in. (A hand-made 569-byte e-mail, under half the
    campaign's, and texts without a status callback measured a quarter more messages/s: medians of
    6,214 against 4,984 on one host.)"""
    from storeloop.consent.services import MessagingConsentManager
    from storeloop.contacts.models import Contact
    from storeloop.integrations.smtp.message import render
    from storeloop.integrations.twilio.client import callback_url_with_key
    from storeloop.messaging.channels.base import Envelope
    from storeloop.messaging.channels.factory import channel_for
    from storeloop.messaging.dispatcher import default_context
    from storeloop.messaging.models import Message
    from storeloop.messaging.templates import TemplateRepository

    consent, templates = MessagingConsentManager(), TemplateRepository()
    wire: list[Any] = []
    for key, channel_name, address in (("news", "email", "email"), ("sale", "sms", "phone")):
        contact = Contact.objects.filter(store=store).exclude(**{address: ""}).order_by("pk").first()
        version = templates.get_template(store, key, channel_name)
        link = consent.generate_unsubscribe_link(contact, channel_name, "marketing") if channel_name == "email" else ""
        links = {"unsubscribe_url": link, "preferences_url": consent.preferences_link_for(link)}
        message = Message(store=store, contact=contact, channel=channel_name, purpose="marketing", context={})
        rendered = templates.render_template(version, {**default_context(message), **links})
        envelope = Envelope(message_id=0, idempotency_key=str(message.idempotency_key), to=getattr(contact, address),
                            rendered=rendered, marketing=True, unsubscribe_url=link,
                            preferences_url=links["preferences_url"])  # fmt: skip
        channel: Any = channel_for(store, channel_name)
        if channel_name == "email":
            sender = channel.senders[0]
            spec = channel.spec_for(envelope)
            wire.append(render(spec, sender._domain_for(spec)))
        else:
            client = channel.client
            wire.append({"From": client.from_number, "Body": rendered.text, "StatusCallback": callback_url_with_key(
                client.status_callback, envelope.idempotency_key, client.key_param)})  # fmt: skip
    return wire[0], wire[1]


def provider_capacity(smtp: Fake, twilio: Fake, count: int, payloads: tuple[bytes, dict[str, str]]) -> float:
    """Both fakes blasted at once by bare clients in two processes, sending the campaigns' messages
    (``campaign_payloads``) → messages/s together. Prints where the CPU went, per message sent (to
    compare with the end-to-end run's)."""
    ctx = multiprocessing.get_context("spawn")
    fakes_before = [pid_cpu_seconds(fake.proc.pid) for fake in (smtp, twilio)]
    pipes, procs = [], []
    for target, args in (
        (_blast_smtp, (smtp.info["host"], smtp.info["port"], payloads[0], count // 2, CONCURRENCY)),
        (_blast_twilio, (twilio.info, payloads[1], count // 2, CONCURRENCY)),
    ):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=target, args=(*args, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results = [pipe.recv() for pipe in pipes]
    for proc in procs:
        proc.join(30)
    fakes = [pid_cpu_seconds(fake.proc.pid) - before for fake, before in zip((smtp, twilio), fakes_before, strict=True)]
    half = count // 2
    print(f"  capacity CPU per message (ms): SMTP client {1000 * results[0][2] / half:.3f}, fake SMTP "
          f"{1000 * fakes[0] / half:.3f}; Twilio client {1000 * results[1][2] / half:.3f}, fake Twilio "
          f"{1000 * fakes[1] / half:.3f}")  # fmt: skip
    sent = sum(n for n, _, _ in results)
    return sent / max(seconds for _, seconds, _ in results)


def wait_until_idle(pids: list[int], timeout: float = 60.0) -> None:
    """Until the processes have started up: together under a tenth of a core for half a second
    (the clock must not start while workers still import Django)."""
    deadline = time.monotonic() + timeout
    before = sum(pid_cpu_seconds(pid) for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(pid_cpu_seconds(pid) for pid in pids)
        if now - before < 0.05:
            return
        before = now
    raise RuntimeError(f"the workers and scheduler still busy after {timeout:.0f}s")


class CpuMeter:
    """CPU seconds of the run's processes between two readings, per message, and the machine's."""

    def __init__(self, processes: dict[str, list[int]]) -> None:
        self.processes = processes
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        readings = {name: sum(pid_cpu_seconds(pid) for pid in pids) for name, pids in self.processes.items()}
        readings["bench"] = own_cpu_seconds()
        readings["machine busy"], readings["machine total"] = machine_cpu_seconds()
        return readings

    def report(self, messages: int) -> dict[str, float]:
        end = self._read()
        used = {name: end[name] - self.start[name] for name in end}
        total = used.pop("machine total")
        per_message = {name: round(1000 * seconds / messages, 3) for name, seconds in used.items()}
        print("  CPU per message (ms): " + ", ".join(f"{name} {ms:.3f}" for name, ms in per_message.items())
              + f"; machine {100 * used['machine busy'] / max(total, 1e-9):.0f} % busy")  # fmt: skip
        return per_message


# --- Django side (this process, after setup) -----------------------------------------------------


def daytime_range() -> str:
    import datetime as dt

    import phonenumbers
    from django.utils import timezone

    from storeloop.messaging.policies import quiet_until, zone_for

    now = timezone.now()
    for prefix in PHONE_RANGES:
        numbers = [phonenumbers.parse(prefix + n) for n in ("00000", "99999")]
        if not all(phonenumbers.is_valid_number(n) for n in numbers):
            continue
        zone = zone_for(prefix + "00000", "")
        soon = [now + dt.timedelta(minutes=m) for m in (0, 30, 60)]
        if zone.key != "UTC" and all(quiet_until(t, zone) is None for t in soon):
            return prefix
    raise RuntimeError("no valid phone range where it is daytime now")


def seed(recipients: int, smtp: dict[str, Any], twilio: dict[str, Any]) -> Any:
    """Contacts with marketing consent (as ``grant_consent`` records it, written in bulk), the
    connections and the two published templates."""
    from django.db import transaction
    from django.utils import timezone

    from storeloop.consent.models import ConsentEvent, ConsentState
    from storeloop.contacts.models import Contact
    from storeloop.messaging.channels.connections import connect_smtp, connect_twilio
    from storeloop.messaging.templates import TemplateRepository
    from storeloop.stores.models import Store

    store = Store.objects.create(name="Bench shop", url="https://bench.example", consumer_key="ck",
                                 consumer_secret="cs", webhook_secret="x", manage_webhooks=False)  # fmt: skip
    connect_smtp(store_id=store.pk, host=smtp["host"], port=smtp["port"], security="none",
                 from_addr="shop@shop.example", messages_per_second=5000)  # fmt: skip
    connect_twilio(store_id=store.pk, account_sid=twilio["account_sid"], auth_token=twilio["auth_token"],
                   from_number=twilio["from_number"], base_url=twilio["url"], messages_per_second=5000)  # fmt: skip
    repo = TemplateRepository()
    hello = "Hello {{ contact.first_name }}! Our news this week."
    repo.publish(repo.save_template(store, "news", "email", subject="News for {{ contact.first_name }}",
                                    body_text=hello, body_html=f"<p>{hello}</p>"))  # fmt: skip
    repo.publish(repo.save_template(store, "sale", "sms", body_text="{{ contact.first_name }}: 20% off this week"))
    repo.publish(repo.save_template(store, "receipt", "email", subject="Your receipt", body_text="Thanks!"))
    prefix = daytime_range()
    print(f"SMS recipients: {prefix}xxxxx, where it is daytime now (quiet hours cost more for some ranges)")
    half = recipients // 2
    now = timezone.now()
    with transaction.atomic():
        contacts = Contact.objects.bulk_create(
            [Contact(store=store, email=f"c{n}@bench.example", first_name=f"Ann{n}", country="DE") for n in range(half)]
            + [Contact(store=store, phone=f"{prefix}{n:05d}", first_name=f"Bob{n}") for n in range(recipients - half)],
            batch_size=5000,
        )
        events = ConsentEvent.objects.bulk_create(
            [ConsentEvent(store=store, contact=c, channel="email" if i < half else "sms", purpose="marketing",
                          action="grant", lawful_basis="consent", source="checkout", evidence={}, occurred_at=now)
             for i, c in enumerate(contacts)],
            batch_size=5000,
        )  # fmt: skip
        ConsentState.objects.bulk_create(
            [ConsentState(store=store, contact_id=e.contact_id, channel=e.channel, purpose="marketing",
                          status="granted", lawful_basis="consent", last_event=e, updated_at=now) for e in events],
            batch_size=5000,
        )  # fmt: skip
    return store


def wait_until_sent(store: Any, expected: int, timeout: float, *, campaigns: bool) -> float:
    """When every message is materialised and none is left to send. Polled cheaply (an indexed
    existence check; counting 100,000 rows five times a second took a seventh of a core from the
    system under test); the full count only once nothing is open."""
    from storeloop.messaging.campaigns.models import Campaign
    from storeloop.messaging.models import Message

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Message.objects.filter(status__in=["queued", "sending", "held"]).exists():
            total = Message.objects.filter(store=store).count()
            done_campaigns = (
                not campaigns or not Campaign.objects.filter(store=store).exclude(state="completed").exists()
            )
            if total >= expected and done_campaigns:
                return time.perf_counter()
        time.sleep(0.1)
    raise RuntimeError(f"not all {expected} messages were sent within {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="storeloop worker processes (default 2)")
    parser.add_argument("--naive", type=int, default=2000, help="messages sent one task each (default 2,000)")
    parser.add_argument("--quick", action="store_true", help="10,000 recipients, 500 naive")
    args = parser.parse_args()
    recipients, naive_count = (10_000, 500) if args.quick else (args.recipients, args.naive)
    busy_before = machine_busy_fraction(1.0)
    with temp_data_dir("storeloop-dispatch-") as data_dir:
        env = storeloop_env(data_dir, port=free_port(), web_workers=1)
        env["STORELOOP_PUBLIC_URL"] = "https://loop.example"
        run_storeloop(env, "setup")
        os.environ.update({k: v for k, v in env.items() if k.startswith(("STORELOOP_", "DJANGO_"))})
        import django

        django.setup()
        from django.db.models import Count

        from storeloop.messaging.manager import MessagingManager
        from storeloop.messaging.models import Message

        smtp, twilio = Fake("smtp"), Fake("twilio")
        processes: list[ServerProcess] = []
        try:
            started = time.perf_counter()
            store = seed(recipients, smtp.info, twilio.info)
            print(f"seeded {recipients:,} contacts with consent in {time.perf_counter() - started:.1f}s")
            payloads = campaign_payloads(store)
            print(f"the campaigns' messages: an e-mail of {len(payloads[0]):,} bytes, a text of "
                  f"{len(payloads[1]['Body'])} characters with its status callback")  # fmt: skip
            capacity_before = provider_capacity(smtp, twilio, min(20_000, recipients), payloads)
            print(f"provider capacity (bare clients, both fakes at once): {capacity_before:,.0f} messages/s")
            for n in range(args.workers):
                # Every queue but order sync: no shop stands behind the bench store, and the
                # reconciliation the scheduler queues at start would hold a worker for seconds of
                # connection retries.
                command = [STORELOOP, "worker", "--interval", "0.05", "--queues", "default,webhooks,maintenance"]
                processes.append(ServerProcess(command, env, data_dir / f"worker{n}.log"))
            processes.append(ServerProcess([STORELOOP, "scheduler", "--tick", "0.2"], env, data_dir / "scheduler.log"))
            wait_until_idle([p.proc.pid for p in processes])  # started up, polling an empty queue
            manager = MessagingManager()
            meter = CpuMeter({
                "workers": [p.proc.pid for p in processes[:-1]], "scheduler": [processes[-1].proc.pid],
                "fake SMTP": [smtp.proc.pid], "fake Twilio": [twilio.proc.pid],
            })  # fmt: skip
            t0 = time.perf_counter()
            manager.send_bulk_message(store, template_key="news", channel="email", audience={"all": []})
            manager.send_bulk_message(store, template_key="sale", channel="sms", audience={"all": []})
            t1 = wait_until_sent(store, recipients, timeout=max(600, recipients / 50), campaigns=False)
            rate = recipients / (t1 - t0)
            cpu = meter.report(recipients)
            wait_until_sent(store, recipients, timeout=60, campaigns=True)  # and both marked completed
            statuses = dict(Message.objects.filter(store=store).values_list("status").annotate(n=Count("id")))
            print(f"end to end: {recipients:,} messages in {t1 - t0:.1f}s = {rate:,.0f} messages/s {statuses}")
            mail, texts = smtp.stats(), twilio.stats()
            campaign_mail = [r for r in mail["recipients"] if r.endswith("@bench.example") and not r.startswith("raw")]
            campaign_texts = [r for r in texts["recipients"] if not r.startswith("+4915199")]
            exactly_once = (
                len(campaign_mail) == len(set(campaign_mail)) == recipients // 2
                and len(campaign_texts) == len(set(campaign_texts)) == recipients - recipients // 2
            )
            print(f"at the fakes: {len(campaign_mail):,} e-mails, {len(campaign_texts):,} SMS; "
                  f"exactly once: {exactly_once}")  # fmt: skip
            processes[-1].stop()  # the scheduler: the naive phase must not be drained in batches

            naive_rate = naive(store, naive_count)
            print(f"naive, one task per message: {naive_rate:,.0f} messages/s")
            for proc in processes:
                proc.stop()
            capacity_after = provider_capacity(smtp, twilio, min(20_000, recipients), payloads)
            capacity = (capacity_before + capacity_after) / 2
            print(f"provider capacity again after the run: {capacity_after:,.0f} messages/s; "
                  f"mean {capacity:,.0f}")  # fmt: skip
        finally:
            for proc in processes:
                proc.stop()
            smtp.stop()
            twilio.stop()
    ratio = rate / capacity
    met = rate >= TARGET_PER_S and ratio >= TARGET_RATIO and exactly_once
    print(f"ratio {ratio:.2f} (end to end ÷ provider capacity); targets >= {TARGET_PER_S:,.0f}/s and ratio >= "
          f"{TARGET_RATIO}: {'met' if met else 'NOT met'}")  # fmt: skip
    print_json_line({
        "benchmark": "dispatch", "database": "sqlite", "messages": recipients, "messages_per_s": round(rate, 1),
        "provider_capacity_per_s": round(capacity, 1), "ratio": round(ratio, 3), "naive_per_s": round(naive_rate, 1),
        "provider_capacity_before_after": [round(capacity_before, 1), round(capacity_after, 1)],
        "capacity_email_bytes": len(payloads[0]),
        "exactly_once": exactly_once, "workers": args.workers, "statuses": statuses, "targets_met": met,
        "machine_busy_before_pct": round(100 * busy_before, 1), "cpu_ms_per_message": cpu, "machine": machine_info(),
    })  # fmt: skip
    return 0 if exactly_once else 1


def naive(store: Any, count: int) -> float:
    """``count`` transactional e-mails, each sent by its own ``send_message`` task."""
    import datetime as dt

    from django.db import transaction
    from django.utils import timezone

    from storeloop.contacts.models import Contact
    from storeloop.core.tasks import enqueue_on_commit
    from storeloop.messaging.dispatcher import MessageDispatcher
    from storeloop.messaging.tasks import send_message
    from storeloop.messaging.templates import TemplateRepository

    template = TemplateRepository().get_template(store, "receipt", "email")
    contacts = list(Contact.objects.filter(store=store).exclude(email="").order_by("id")[:count])
    queued = MessageDispatcher(lambda *_: None)  # type: ignore[arg-type,return-value]
    # Not due for a day: only the per-message tasks send them (send_immediate ignores the due
    # time), never a batch drain still queued from the campaign.
    later = timezone.now() + dt.timedelta(days=1)
    with transaction.atomic():
        ids = [queued.queue_message(store=store, contact=c, channel="email", purpose="transactional", template=template,
                                    dedupe_key=f"receipt-{c.pk}", not_before=later).pk for c in contacts]  # fmt: skip
    t0 = time.perf_counter()
    with transaction.atomic():
        for pk in ids:
            enqueue_on_commit(send_message, str(pk))
    wait_until_sent(store, 0, timeout=600, campaigns=False)
    return count / (time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(main())
