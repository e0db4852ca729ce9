"""``MessageDispatcher``: durable, never-twice delivery of queued messages (design note 2C).

Each message is a row. A worker claims due rows in a batch (``SKIP LOCKED`` on PostgreSQL), asks
the consent gate *at send time*, applies marketing caps and quiet hours (which delay, never drop),
renders, and records the attempt (status ``sending``) in a commit **before** calling the provider.
Then sending threads take the batch's parts (a provider connection's share each) and hand them
over a small group at a time, each group named in a journal entry before its provider call, with
the sends accepted so far (``messaging.handover``). Outcomes are written back in bulk once the
batch is done.

A worker that dies leaves rows in ``sending``. The reaper queues again those never handed over
(no provider saw them) and marks the others ``unknown``, never resent blindly;
``messaging.settlement`` asks the providers that can tell (Twilio) whether they took each one:
sent, or queued again. Where no provider can tell (SMTP, WhatsApp), a worker's death costs the
groups each of its sending threads had handed over (two or three groups of ``HANDOVER_GROUP``):
the price of the guarantee that nobody ever gets the same message twice (docs/campaigns.md,
"Never twice").

Providers tell us through their status webhooks (``messaging.inbound``), which name the message by
our idempotency key: an ``unknown`` message they report as sent moves on like any other. Those
reports can overtake the send's own outcome, so outcomes are written only over rows still
``sending``. WhatsApp envelopes say whether the customer's 24-hour window is open (from the last
inbound message on record): free text inside it, the approved template outside.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.db import connection as db_connection
from django.db import connections as db_connections
from django.db.models import Max, Model, Q
from django.db.models.base import ModelState
from django.db.models.functions import Coalesce
from django.utils import timezone

from storeloop.consent.models import Channel, Preference, Purpose
from storeloop.consent.services import MessagingConsentManager, address_for, live_contact
from storeloop.contacts.models import Contact
from storeloop.core.bulk import ids_in, quoted_column, value_is
from storeloop.core.errors import ApplicationError, ValidationError
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.channels.base import ChannelInterface, Envelope, Outcome, SendResult
from storeloop.messaging.channels.factory import account_key, account_rate, send_rate
from storeloop.messaging.handover import Accepted, PartSent, Recorder, send_part, write_sent
from storeloop.messaging.inbound.window import is_window_open, last_inbound_times
from storeloop.messaging.models import HandOver, Message, MessagingConnection, TemplateVersion
from storeloop.messaging.policies import MarketingPolicy, next_allowed_by_cap, recipient_quiet_until
from storeloop.messaging.templates import TemplateRepository
from storeloop.stores.models import Store

logger = logging.getLogger("storeloop.dispatch")
Status = Message.Status
CLAIM = dt.timedelta(minutes=5)
SEND_WINDOW = dt.timedelta(seconds=60)  # a batch's sends must finish well inside its claim
MAX_ATTEMPTS = 6
PRIORITY = {Purpose.TRANSACTIONAL: 10, Purpose.MARKETING: 0}
CHANNEL_TTL = 1.0  # seconds a drain uses a store's channel before looking it up again
# Provider connections one batch sends to side by side (each with up to ``concurrency`` threads): a
# batch holds the three channels' shares (see ``_claim``), more only when several stores share it.
MAX_PARALLEL_CONNECTIONS = 3

ChannelFactory = Callable[[Store, str], ChannelInterface]
_M = TypeVar("_M", bound=Model)
_Part = tuple[tuple[int, str], list[tuple[Message, Envelope]]]  # (store, channel) and its messages
_T = TypeVar("_T")


class MessageDispatcher:
    def __init__(
        self,
        channel_factory: ChannelFactory,
        *,
        consent: MessagingConsentManager | None = None,
        templates: TemplateRepository | None = None,
        context_builder: Callable[[Message], dict[str, Any]] | None = None,
        concurrency: int = 4,
    ) -> None:
        self.channel_factory = channel_factory
        self.consent = consent or MessagingConsentManager()
        self.templates = templates or TemplateRepository()
        self.context_builder = context_builder or default_context
        self.concurrency = concurrency
        self._claims = 0  # rotates which channel a batch too small to share evenly serves first

    # --- queueing ------------------------------------------------------------------------------

    def queue_message(
        self,
        *,
        store: Store,
        contact: Contact,
        channel: str,
        purpose: str,
        template: TemplateVersion,
        dedupe_key: str,
        context: Mapping[str, Any] | None = None,
        not_before: dt.datetime | None = None,
        campaign_id: int | None = None,
    ) -> Message:
        """Queue one message; the same ``dedupe_key`` twice gives the one existing message."""
        if channel not in Channel.values or purpose not in Purpose.values:
            raise ValidationError("unknown channel or purpose", code="invalid_message")
        if template.template.channel != channel:
            raise ValidationError("the template is for another channel", code="template_channel_mismatch")
        if contact.store_id != store.pk:
            raise ValidationError("the contact belongs to another store", code="contact_not_found")
        try:
            with transaction.atomic():
                return Message.objects.create(
                    store=store, contact=contact, channel=channel, purpose=purpose, template=template,
                    context=dict(context or {}), dedupe_key=dedupe_key[:200], campaign_id=campaign_id,
                    priority=PRIORITY[Purpose(purpose)], not_before=not_before or timezone.now(),
                )  # fmt: skip
        except IntegrityError:
            return Message.objects.get(store=store, dedupe_key=dedupe_key[:200])

    # --- sending -------------------------------------------------------------------------------

    def process_queue(self, *, batch_size: int = 500, channel: str | None = None) -> Counter[str]:
        """Claim and send one batch of due messages; returns counts by outcome."""
        ids = self._claim(batch_size, channel)
        return self._process(ids) if ids else Counter()

    def send_immediate(self, message_id: int) -> str:
        """Send one queued message now (transactional paths); returns its new status."""
        now = timezone.now()
        with transaction.atomic():
            claimed = Message.objects.filter(
                Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), pk=message_id, status=Status.QUEUED
            ).update(claimed_until=now + CLAIM, not_before=now)
        if claimed:
            self._process([message_id])
        return str(Message.objects.values_list("status", flat=True).get(pk=message_id))

    def _claim(self, size: int, channel: str | None) -> list[int]:
        """Up to ``size`` due messages, shared fairly between the channels that have some.

        Each channel's share is taken in its own order (transactional first, then oldest due), so a
        batch keeps every provider busy at once, and a long marketing e-mail backlog never holds
        back the texts queued after it (nor the other way round).
        """
        now = timezone.now()
        with transaction.atomic():
            due = Message.objects.select_for_update(skip_locked=True).filter(
                Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), status=Status.QUEUED, not_before__lte=now
            )
            in_order = due.order_by("-priority", "not_before", "id")
            per_channel = [
                list(in_order.filter(channel=name).values_list("pk", flat=True)[:size])
                for name in ([channel] if channel else Channel.values)
            ]
            self._claims += 1
            ids = fair_share(per_channel, size, first=self._claims)
            Message.objects.filter(ids_in(Message, "id", ids)).update(claimed_until=now + CLAIM)
        return ids

    def drain(
        self,
        *,
        budget_seconds: float,
        batch_size: int = 500,
        on_backlog: Callable[[], None] | None = None,
        give_way: Callable[[], bool] | None = None,
    ) -> tuple[Counter[str], bool]:
        """Claim and send batch after batch until nothing is due, ``budget_seconds`` are spent or
        ``give_way`` (asked before each claim) says other work waits for this worker; returns the
        counts and whether it stopped early (more may be due). ``on_backlog`` is called once,
        when a claim first comes back full: more is due than this drain takes at a time, worth
        another worker's drain.

        Pipelined: while one batch is with the providers, the next is claimed, checked, rendered and
        marked ``sending``; its results are written once the following batch is on its way. So the
        database work and the provider round trips overlap instead of taking turns. At most one
        batch is in flight, and a batch's attempt is always on record before its provider calls.
        """
        deadline = time.monotonic() + budget_seconds
        total: Counter[str] = Counter()
        in_flight: _InFlight | None = None
        out_of_time = False
        channels = _DrainLookups(self.channel_factory)
        with _SendPool() as pool:
            while True:
                out_of_time = out_of_time or time.monotonic() > deadline or (give_way is not None and give_way())
                upcoming: _InFlight | None = None
                try:
                    ids = [] if out_of_time else self._claim(batch_size, None)
                    if len(ids) == batch_size and on_backlog is not None:
                        on_backlog()
                        on_backlog = None
                    if ids:
                        prepared = self._prepare(ids, channels)
                        upcoming = (prepared, self._start_sending(prepared, pool))
                finally:  # even when preparing failed: the batch in flight was sent, record its outcomes
                    if in_flight is not None:
                        self._finish(*in_flight)
                        total += in_flight[0].counts
                in_flight = upcoming
                if in_flight is None:
                    return total, out_of_time

    def _process(self, ids: list[int]) -> Counter[str]:
        prepared = self._prepare(ids, _DrainLookups(self.channel_factory))
        if prepared.ready:
            # One batch: the sending threads write their journal entries themselves, rather than
            # start a recorder thread for it (a single message's send went 17 % slower).
            with _SendPool(own_entries=True) as pool:
                self._finish(prepared, self._start_sending(prepared, pool))
        return prepared.counts

    def _finish(self, prepared: _Prepared, sending: list[Future[PartSent]]) -> None:
        if prepared.ready:
            results: dict[int, SendResult] = {}
            for future in sending:
                try:
                    results.update((r.message_id, r) for r in future.result().results)
                except Exception:  # a part that blew up: its messages are ``unknown`` ("no result"), not the others
                    logger.exception("a sending thread failed its part")
            self._write_results(prepared.ready, results, prepared.counts, prepared.attempt)

    def _prepare(self, ids: list[int], lookups: _DrainLookups) -> _Prepared:
        """Everything before the provider calls: the gate, caps, quiet hours and rendering, the
        decisions written, and the attempt of what will be sent on record (status ``sending``)."""
        now = timezone.now()
        messages = self._within_send_window(_load_batch(ids, lookups), lookups)
        counts: Counter[str] = Counter()
        ready: list[tuple[Message, Envelope]] = []
        delayed: dict[int, tuple[dt.datetime, str]] = {}
        closed: dict[int, tuple[str, str]] = {}  # id -> (status, reason)
        last_sent = self._last_marketing_sends(messages)
        policies = lookups.policies({m.store_id for m in messages})
        preferences = dict(
            Preference.objects.filter(ids_in(Preference, "contact", {m.contact_id for m in messages})).values_list(
                "contact_id", "frequency"
            )
        )
        taken: set[tuple[int, str]] = set()  # one marketing message per contact and channel per batch
        last_inbound = self._last_inbound(messages)
        decisions = self.consent.has_consent_many([(m.contact, m.channel, m.purpose) for m in messages], at=now)
        for message, decision in zip(messages, decisions, strict=True):
            # A contact merged away since queueing: the gate answered for the survivor, so send to
            # the survivor's address too (never to the old one, which may be suppressed).
            recipient = live_contact(message.contact)
            if not decision.allowed:
                closed[message.pk] = (Status.SUPPRESSED, decision.reason)
                continue
            marketing = message.purpose == Purpose.MARKETING
            if marketing:
                key = (message.contact_id, message.channel)
                policy = policies[(message.store_id, message.channel)]
                cap_until = next_allowed_by_cap(
                    last_sent.get(key), message.channel, preferences.get(message.contact_id), policy
                )
                if key in taken and cap_until is None:
                    cap_until = now + dt.timedelta(minutes=1)
                if cap_until is not None and cap_until > now:
                    delayed[message.pk] = (cap_until, "frequency_cap")
                    continue
                if policy.quiet_hours is not None:
                    quiet_end = recipient_quiet_until(now, recipient.phone, recipient.country, policy.quiet_hours)
                    if quiet_end is not None:
                        delayed[message.pk] = (quiet_end, "quiet_hours")
                        continue
                taken.add(key)
            template = message.template
            assert template is not None  # queue_message and campaigns always set one
            # The link is signed per recipient: only where it is used (every marketing e-mail
            # carries it in List-Unsubscribe; texts only when their template shows it).
            unsubscribe = ""
            if marketing and (message.channel == Channel.EMAIL or self.templates.uses_links(template)):
                unsubscribe = self.consent.generate_unsubscribe_link(recipient, message.channel, message.purpose)
            links = {"unsubscribe_url": unsubscribe, "preferences_url": self.consent.preferences_link_for(unsubscribe)}
            try:
                rendered = self.templates.render_template(template, {**self.context_builder(message), **links})
            except ValidationError as exc:
                closed[message.pk] = (Status.FAILED, f"template: {exc.message}"[:100])
                continue
            to = address_for(recipient, message.channel)
            # WhatsApp free text only inside the 24-hour window the customer's last message opened.
            window = message.channel != Channel.WHATSAPP or is_window_open(
                last_inbound.get((message.store_id, to)), now
            )
            ready.append((message, Envelope(
                message_id=message.pk, idempotency_key=str(message.idempotency_key), to=to, rendered=rendered,
                marketing=marketing, unsubscribe_url=unsubscribe, preferences_url=links["preferences_url"],
                window_open=window,
                wa_template_name=template.wa_template_name, wa_language=template.wa_language,
                locale=template.template.locale,
            )))  # fmt: skip
        self._write_decisions(closed, delayed, counts)
        senders = {(m.store_id, m.channel): m.store for m, _ in ready}  # the channels once, not per message
        channels = {key: lookups.get(store, key[1]) for key, store in senders.items()}
        if ready:
            providers = lookups.providers({store_id for store_id, _ in senders})
            ready = self._mark_sending(ready, last_sent, preferences, now, counts, policies, providers)
        return _Prepared(ready, counts, channels, now)

    def _mark_sending(
        self,
        ready: list[tuple[Message, Envelope]],
        last_sent: dict[tuple[int, str], dt.datetime],
        preferences: dict[int, str],
        now: dt.datetime,
        counts: Counter[str],
        policies: _Policies,
        providers: dict[tuple[int, str], str],
    ) -> list[tuple[Message, Envelope]]:
        """Put the attempt on record before any provider call: a crash from here on can never lead
        to a second send (see the module docstring). Returns what may be sent."""
        marketing = [m for m, _ in ready if m.purpose == Purpose.MARKETING]
        with transaction.atomic():
            if marketing and db_connection.features.has_select_for_update:
                # Serialise workers on these contacts (SQLite's immediate transactions already do):
                # the cap re-check below must see every other worker's committed attempt.
                list(Contact.objects.select_for_update().filter(pk__in={m.contact_id for m in marketing})
                     .order_by("pk").values_list("pk", flat=True))  # fmt: skip
            # Only rows still queued: a campaign paused or cancelled since the claim took its
            # messages to held/cancelled, and those must not be sent.
            still_queued = set(
                Message.objects.select_for_update()
                .filter(ids_in(Message, "id", [m.pk for m, _ in ready]), value_is(Message, "status", Status.QUEUED))
                .values_list("pk", flat=True)
            )
            # Caps again, now that other workers' (and this worker's in-flight) attempts since the
            # batch was checked are visible: a contact never gets two marketing messages at once.
            capped: dict[dt.datetime, list[int]] = defaultdict(list)
            fresh = self._last_marketing_sends([m for m in marketing if m.pk in still_queued])
            for message in marketing:
                key = (message.contact_id, message.channel)
                if message.pk in still_queued and fresh.get(key) != last_sent.get(key):
                    policy = policies[(message.store_id, message.channel)]
                    until = next_allowed_by_cap(
                        fresh.get(key), message.channel, preferences.get(message.contact_id), policy
                    )
                    if until is not None and until > now:
                        capped[until].append(message.pk)
                        still_queued.discard(message.pk)
            for until, pks in capped.items():
                Message.objects.filter(pk__in=pks).update(not_before=until, reason="frequency_cap", claimed_until=None)
                counts["delayed"] += len(pks)
            # The attempt names its provider (the message keeps it: its provider id is that provider's).
            attempts: dict[str, list[int]] = defaultdict(list)
            for message, _ in ready:
                if message.pk in still_queued:
                    attempts[providers.get((message.store_id, message.channel), "")].append(message.pk)
            for provider, pks in attempts.items():
                Message.objects.filter(ids_in(Message, "id", pks)).update(
                    status=Status.SENDING, attempted_at=now, provider=provider
                )
        return [(m, e) for m, e in ready if m.pk in still_queued]

    @staticmethod
    def _within_send_window(messages: list[Message], lookups: _DrainLookups) -> list[Message]:
        """Keep per store and channel only what its send rate gets out in ``SEND_WINDOW``; release
        the rest to the queue. Sends are paced to the rate, and a batch that outlived its claim
        would be reaped as ``unknown`` while still being sent (500 messages at 1/s). Stores that
        share a provider account's rate share its window too."""
        groups: dict[tuple[int, str], list[Message]] = defaultdict(list)
        for message in messages:
            groups[(message.store_id, message.channel)].append(message)
        store_ids = {store_id for store_id, _ in groups}
        rates, accounts = lookups.send_rates(store_ids), lookups.accounts(store_ids)
        sharing = Counter(accounts[key][0] for key in groups if key in accounts)  # account -> its groups here
        window = SEND_WINDOW.total_seconds()
        kept: list[Message] = []
        released: list[int] = []
        for key, group in groups.items():
            limit = max(1, int(rates.get(key, 10.0) * window))
            if key in accounts:
                account, shared_rate = accounts[key]
                limit = min(limit, max(1, int(shared_rate * window) // sharing[account]))
            kept.extend(group[:limit])
            released.extend(m.id for m in group[limit:])
        if released:
            Message.objects.filter(ids_in(Message, "id", released), value_is(Message, "status", Status.QUEUED)).update(
                claimed_until=None
            )
        return kept

    @staticmethod
    def _last_inbound(messages: list[Message]) -> dict[tuple[int, str], dt.datetime]:
        """``(store, phone) -> last inbound WhatsApp message`` for the batch's WhatsApp recipients."""
        phones: dict[int, set[str]] = defaultdict(set)
        for message in messages:
            if message.channel == Channel.WHATSAPP and message.contact.phone:
                phones[message.store_id].add(message.contact.phone)
        return {(store_id, address): at for store_id, wanted in phones.items()
                for address, at in last_inbound_times(store_id, wanted).items()}  # fmt: skip

    def _last_marketing_sends(self, messages: list[Message]) -> dict[tuple[int, str], dt.datetime]:
        """``(contact, channel) -> last marketing send``, counting attempts still ``sending`` and
        those whose outcome is ``unknown``: they may well have reached the customer."""
        marketing = [m for m in messages if m.purpose == Purpose.MARKETING]
        if not marketing:
            return {}
        rows = (
            Message.objects.filter(
                Q(sent_at__isnull=False) | Q(status__in=(Status.SENDING, Status.UNKNOWN), attempted_at__isnull=False),
                ids_in(Message, "contact", {m.contact_id for m in marketing}),
                purpose=Purpose.MARKETING,
            )
            .values("contact_id", "channel")
            .annotate(last=Max(Coalesce("sent_at", "attempted_at")))
        )
        return {(r["contact_id"], r["channel"]): r["last"] for r in rows}

    def _chunks(self, ready: list[tuple[Message, Envelope]]) -> list[_Part]:
        """The batch split per store and channel, each into at most ``concurrency`` parts sent side
        by side: the bound on concurrent sends per provider connection."""
        by_channel: dict[tuple[int, str], list[tuple[Message, Envelope]]] = defaultdict(list)
        for message, envelope in ready:
            by_channel[(message.store_id, message.channel)].append((message, envelope))
        chunks: list[_Part] = []
        for key, pairs in by_channel.items():
            size = min(100, -(-len(pairs) // self.concurrency))
            chunks.extend((key, pairs[i : i + size]) for i in range(0, len(pairs), size))
        return chunks

    def _start_sending(self, prepared: _Prepared, pool: _SendPool) -> list[Future[PartSent]]:
        # A thread per part, so every provider's parts go at once; with many stores in one batch
        # the parts beyond the cap wait their turn.
        chunks = self._chunks(prepared.ready)
        pool.grow(min(len(chunks), self.concurrency * MAX_PARALLEL_CONNECTIONS))
        return [
            pool.submit(_send_chunk, prepared.channels[key], key[1], part, pool.recorder, prepared.attempt)
            for key, part in chunks
        ]

    def _write_decisions(
        self, closed: dict[int, tuple[str, str]], delayed: dict[int, tuple[dt.datetime, str]], counts: Counter[str]
    ) -> None:
        if not closed and not delayed:  # the usual batch: no write transaction (and no write lock) for nothing
            return
        outcomes: dict[tuple[str, str], list[int]] = defaultdict(list)
        for pk, decision in closed.items():
            outcomes[decision].append(pk)
        later: dict[tuple[dt.datetime, str], list[int]] = defaultdict(list)
        for pk, delay in delayed.items():
            later[delay].append(pk)
        with transaction.atomic():
            for (status, reason), pks in outcomes.items():
                # Status guard: a message held or cancelled since the claim keeps that status.
                counts[status] += Message.objects.filter(
                    ids_in(Message, "id", pks), value_is(Message, "status", Status.QUEUED)
                ).update(status=status, reason=reason, claimed_until=None)
            for (when, reason), pks in later.items():  # one update per due time (a cap, a zone's morning)
                Message.objects.filter(pk__in=pks).update(not_before=when, reason=reason, claimed_until=None)
                counts["delayed"] += len(pks)

    def _write_results(
        self,
        ready: list[tuple[Message, Envelope]],
        results: dict[int, SendResult],
        counts: Counter[str],
        attempt: dt.datetime,
    ) -> None:
        """The batch's outcomes, written only over rows still in this attempt (``sending`` since
        ``attempt``): a row the reaper took back from this worker (it overran its claim by minutes)
        may be another worker's attempt by now."""
        now = timezone.now()
        grouped: dict[Outcome, list[tuple[Message, SendResult]]] = defaultdict(list)
        for message, _ in ready:
            result = results.get(message.pk) or SendResult(message.pk, Outcome.UNKNOWN, error="no result")
            grouped[result.outcome].append((message, result))
        # Outcomes are written only over rows still ``sending``: a provider's status webhook may have
        # been processed first (delivered, read), and a status never moves backwards.
        with transaction.atomic():
            write_sent(grouped[Outcome.SENT], now, attempt)
            retries = grouped[Outcome.RETRY]
            stopped = stopped_by_campaign([m.pk for m, _ in retries]) if retries else {}
            for message, result in retries:
                attempts = message.attempts + 1
                if attempts >= MAX_ATTEMPTS:
                    Message.objects.filter(pk=message.pk, status=Status.SENDING, attempted_at=attempt).update(
                        status=Status.FAILED, attempts=attempts, last_error=result.error[:500], claimed_until=None
                    )
                    continue
                delay = max(result.retry_after or 0.0, random.uniform(0, 30 * 2 ** (attempts - 1)))
                instead = stopped.get(message.pk, {"status": Status.QUEUED})
                Message.objects.filter(pk=message.pk, status=Status.SENDING, attempted_at=attempt).update(
                    attempts=attempts, last_error=result.error[:500], claimed_until=None,
                    not_before=now + dt.timedelta(seconds=delay), **instead,
                )  # fmt: skip
            for outcome in (Outcome.FAILED, Outcome.OPTED_OUT, Outcome.UNDELIVERABLE, Outcome.UNKNOWN):
                for message, result in grouped[outcome]:
                    status = Status.UNKNOWN if outcome == Outcome.UNKNOWN else Status.FAILED
                    # An "unknown" send may still carry its id (SMTP's Message-ID): reports will name it.
                    provider_id = result.provider_message_id[:200]
                    known = {"provider_message_id": provider_id} if provider_id else {}
                    Message.objects.filter(pk=message.pk, status=Status.SENDING, attempted_at=attempt).update(
                        status=status, attempts=message.attempts + 1, last_error=result.error[:500],
                        reason=str(outcome), claimed_until=None, **known,
                    )  # fmt: skip
                    self._consequences(message, outcome, result)
        for outcome, rows in grouped.items():
            counts[str(outcome)] += len(rows)

    def _consequences(self, message: Message, outcome: Outcome, result: SendResult) -> None:
        if outcome == Outcome.OPTED_OUT:
            # WhatsApp's opt-out (131050) covers marketing only; SMS STOP blocks everything.
            purposes = (Purpose.MARKETING,) if message.channel == Channel.WHATSAPP else tuple(Purpose)
            for purpose in purposes:
                self.consent.withdraw_consent(message.contact, message.channel, purpose, source="provider_opt_out",
                                              evidence={"provider_error": result.error[:200]})  # fmt: skip
        elif outcome == Outcome.UNDELIVERABLE:
            address = address_for(message.contact, message.channel)
            if address:
                try:
                    self.consent.suppress(message.store_id, message.channel, address, "hard_bounce", result.error)
                except ValidationError:  # an address we cannot normalise must not roll back the batch
                    logger.warning("message %s: could not suppress an unparseable address", message.pk)


# What a batch loads of each message and its contact: what sending, outcomes and the default context
# read. The rest (timestamps, status, campaign ...) is left out, as ``.only()`` would: any other field
# still loads on access (a custom context builder may read more, one query per message and field).
_BATCH_FIELDS = (
    "id", "store_id", "contact_id", "channel", "purpose", "template_id", "context", "idempotency_key", "attempts",
)  # fmt: skip
_CONTACT_FIELDS = ("id", "store_id", "email", "phone", "first_name", "last_name", "country", "merged_into_id")


def _load_batch(ids: list[int], lookups: _DrainLookups) -> list[Message]:
    """The claimed messages with their contacts (one query), and each store and template version
    from the drain's lookups rather than joined per row (a store's secrets are decrypted on load).

    Rows come from one plain ``SELECT`` and become model instances the way Django builds ones with
    deferred fields, minus the ORM's per-row machinery (its iterator, ``Model.__init__`` and the
    relation descriptors cost more than the query): the loaded values in ``__dict__``, the state
    of a saved instance, the contact, store and template in the relation cache, as
    ``select_related`` leaves them. Everything after the load goes through querysets.
    """
    if not ids:
        return []
    with db_connection.cursor() as cursor:
        cursor.execute(_batch_select() + "(" + ", ".join(str(int(pk)) for pk in ids) + ")")
        rows = cursor.fetchall()
    # In the claim's order (transactional first, then oldest due): ``IN`` promises none, and
    # PostgreSQL has been seen to return a batch backwards, sending its newest messages first.
    position = {pk: index for index, pk in enumerate(ids)}
    rows.sort(key=lambda row: position[row[0]])
    context_field = Message._meta.get_field("context")
    split, store_at, template_at = (
        len(_BATCH_FIELDS),
        _BATCH_FIELDS.index("store_id"),
        _BATCH_FIELDS.index("template_id"),
    )
    stores = lookups.stores({row[store_at] for row in rows})
    versions = lookups.versions({row[template_at] for row in rows if row[template_at] is not None})
    messages = []
    for row in rows:
        values = dict(zip(_BATCH_FIELDS, row[:split], strict=True))
        key = values["idempotency_key"]
        values["idempotency_key"] = key if isinstance(key, uuid.UUID) else uuid.UUID(key)
        values["context"] = context_field.from_db_value(values["context"], None, db_connection)  # type: ignore[attr-defined,arg-type]
        message = _saved_instance(Message, values)
        contact = _saved_instance(Contact, dict(zip(_CONTACT_FIELDS, row[split:], strict=True)))
        template_id = values["template_id"]
        message._state.fields_cache = {
            "contact": contact, "store": stores[values["store_id"]],
            "template": versions[template_id] if template_id is not None else None,
        }  # fmt: skip
        messages.append(message)
    return messages


@lru_cache(maxsize=4)
def _select_for(vendor: str) -> str:
    columns = [f"m.{quoted_column(Message, name)}" for name in _BATCH_FIELDS]
    columns += [f"c.{quoted_column(Contact, name)}" for name in _CONTACT_FIELDS]
    quote = db_connection.ops.quote_name
    return (
        f"SELECT {', '.join(columns)} FROM {quote(Message._meta.db_table)} m "  # noqa: S608 (quoted names only)
        f"INNER JOIN {quote(Contact._meta.db_table)} c ON c.{quoted_column(Contact, 'id')} = "
        f"m.{quoted_column(Message, 'contact_id')} WHERE m.{quoted_column(Message, 'id')} IN "
    )


def _batch_select() -> str:
    """The batch's ``SELECT`` up to its id list (built once per database vendor)."""
    return _select_for(db_connection.vendor)


def fair_share(queues: list[list[_T]], size: int, first: int = 0) -> list[_T]:
    """At most ``size`` items from the heads of the queues, split as evenly as they allow: a queue
    with less than its equal share leaves the rest to the others. What cannot be split evenly goes
    one by one from queue ``first`` on (a caller rotating ``first`` serves every queue in turn
    even when ``size`` is smaller than the number of queues)."""
    quotas = [0] * len(queues)
    left = size
    active = [index for index, items in enumerate(queues) if items]
    while left > 0 and active:
        share = max(1, left // len(active))
        turn = first % len(active)
        for index in active[turn:] + active[:turn]:
            take = min(share, len(queues[index]) - quotas[index], left)
            quotas[index] += take
            left -= take
        active = [index for index in active if quotas[index] < len(queues[index])]
    return [item for index, items in enumerate(queues) for item in items[: quotas[index]]]


def _saved_instance(model: type[_M], values: dict[str, Any]) -> _M:
    instance = model.__new__(model)
    instance.__dict__.update(values)
    instance._state = ModelState()
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return instance


@dataclass(slots=True)
class _Prepared:
    """A batch ready for the providers: what to send (already ``sending``) and the counts so far."""

    ready: list[tuple[Message, Envelope]]
    counts: Counter[str]
    channels: dict[tuple[int, str], ChannelInterface | str]
    attempt: dt.datetime  # the attempt's ``attempted_at``: what the batch's writes check they still own


_InFlight = tuple[_Prepared, "list[Future[PartSent]]"]


def _send_chunk(channel: ChannelInterface | str, name: str, part: list[tuple[Message, Envelope]],
                recorder: Recorder, attempt: dt.datetime) -> PartSent:  # fmt: skip
    if isinstance(channel, str):  # not configured: nothing was sent, try again later
        return PartSent([SendResult(m.pk, Outcome.RETRY, error=channel, retry_after=600.0) for m, _ in part])
    return send_part(channel, name, part, recorder, attempt)


class _Policies(dict[tuple[int, str], MarketingPolicy]):
    """``(store, channel) -> MarketingPolicy``; a channel without a connection has the defaults."""

    def __missing__(self, key: tuple[int, str]) -> MarketingPolicy:
        return MarketingPolicy.for_channel(key[1])


class _DrainLookups:
    """What a drain's batches look up per store rather than per message: the channels (or why
    there is none: not configured, nothing is sent, the messages are tried again later), the send
    rates, the stores themselves and the template versions. Looked up in the preparing thread,
    which already holds a database connection, and again after ``CHANNEL_TTL``: a connection or
    store changed meanwhile takes effect within that time. Template versions never change."""

    def __init__(self, factory: ChannelFactory) -> None:
        self._factory = factory
        self._entries: dict[tuple[int, str], tuple[float, ChannelInterface | str]] = {}
        # store -> (expiry, channel -> its connection's rules): one query of the connections
        self._rates: dict[int, tuple[float, dict[str, _Rules]]] = {}
        self._stores: dict[int, tuple[float, Store]] = {}
        self._versions: dict[int, TemplateVersion] = {}

    def stores(self, ids: set[int]) -> dict[int, Store]:
        return self._fresh(self._stores, ids, Store.objects.in_bulk)

    def versions(self, ids: set[int]) -> dict[int, TemplateVersion]:
        missing = ids - self._versions.keys()
        if missing:
            self._versions.update(TemplateVersion.objects.select_related("template").in_bulk(missing))
        return {pk: self._versions[pk] for pk in ids}

    def get(self, store: Store, name: str) -> ChannelInterface | str:
        now = time.monotonic()
        entry = self._entries.get((store.pk, name))
        if entry is not None and entry[0] > now:
            return entry[1]
        channel: ChannelInterface | str
        try:
            channel = self._factory(store, name)
        except ApplicationError as exc:
            channel = exc.message[:500]
        self._entries[(store.pk, name)] = (now + CHANNEL_TTL, channel)
        return channel

    def send_rates(self, store_ids: set[int]) -> dict[tuple[int, str], float]:
        """``(store, channel) -> messages/s`` of the stores' connections."""
        rules = self._fresh(self._rates, store_ids, _connection_rules)
        return {(pk, name): rule.rate for pk in store_ids for name, rule in rules[pk].items()}

    def accounts(self, store_ids: set[int]) -> dict[tuple[int, str], tuple[str, float]]:
        """``(store, channel) -> (account key, its rate)`` of connections that share a provider
        account's rate (``channels.factory.account_key``)."""
        rules = self._fresh(self._rates, store_ids, _connection_rules)
        return {(pk, name): (rule.account, rule.account_rate) for pk in store_ids
                for name, rule in rules[pk].items() if rule.account_rate}  # fmt: skip

    def policies(self, store_ids: set[int]) -> _Policies:
        """The stores' marketing caps and quiet hours per channel."""
        rules = self._fresh(self._rates, store_ids, _connection_rules)
        return _Policies({(pk, name): rule.policy for pk in store_ids for name, rule in rules[pk].items()})

    def providers(self, store_ids: set[int]) -> dict[tuple[int, str], str]:
        """``(store, channel) -> provider`` (``MessagingConnection.Provider``) of the stores' connections."""
        rules = self._fresh(self._rates, store_ids, _connection_rules)
        return {(pk, name): rule.provider for pk in store_ids for name, rule in rules[pk].items()}

    @staticmethod
    def _fresh(
        cache: dict[int, tuple[float, _T]], ids: set[int], load: Callable[[set[int]], dict[int, _T]]
    ) -> dict[int, _T]:
        """``ids`` from ``cache``, loading (one query) those not looked up within ``CHANNEL_TTL``."""
        now = time.monotonic()
        stale = {pk for pk in ids if (entry := cache.get(pk)) is None or entry[0] <= now}
        if stale:
            cache.update((pk, (now + CHANNEL_TTL, value)) for pk, value in load(stale).items())
        return {pk: cache[pk][1] for pk in ids}


@dataclass(frozen=True, slots=True)
class _Rules:
    """What the dispatcher needs of one connection besides the channel itself."""

    rate: float  # messages/s
    policy: MarketingPolicy
    provider: str
    account: str = ""  # the provider account's rate-limit key, when the connection shares its rate
    account_rate: float | None = None


def _connection_rules(store_ids: set[int]) -> dict[int, dict[str, _Rules]]:
    """Each store's ``channel -> _Rules`` (empty without connections)."""
    rules: dict[int, dict[str, _Rules]] = {pk: {} for pk in store_ids}
    connections = list(
        MessagingConnection.objects.filter(store_id__in=store_ids).only(
            "store_id",
            "channel",
            "provider",
            "settings",
            "messages_per_second",
            "marketing_cap_hours",
            "quiet_hours_start",
            "quiet_hours_end",
        )
    )  # not the credentials: decrypting them is the factory's business, bar the account keys below
    # The account key of connections that share an account's rate names the account (a Twilio SID,
    # a relay login), which is in the credentials: one query for all of them.
    sharing = MessagingConnection.objects.only("provider", "settings", "credentials").in_bulk(
        [c.pk for c in connections if account_rate(c)]
    )
    for c in connections:
        policy = MarketingPolicy.for_channel(c.channel, c.marketing_cap_hours, c.quiet_hours_start, c.quiet_hours_end)
        account = account_key(sharing[c.pk]) if c.pk in sharing else ""
        rules[c.store_id][c.channel] = _Rules(send_rate(c), policy, c.provider, account, account_rate(c))
    return rules


class _SendPool:
    """The sending threads of a drain. They live as long as the drain, so the database connections
    they open (the rate limiters' reservations) serve batch after batch: opening one per chunk cost
    ~1.7 ms on SQLite. Each thread closes its connections when the pool closes.

    Called inside a transaction (a caller's ``atomic`` block, a test's), the sending threads' own
    connections could not see the uncommitted rows they mark and record (and on SQLite would wait
    for its write lock): then every part is sent in the calling thread, one after the other."""

    def __init__(self, *, own_entries: bool = False) -> None:
        self._inline = db_connection.in_atomic_block
        self.recorder = Recorder(inline=self._inline or own_entries)
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []

    def grow(self, size: int) -> None:
        """At least ``size`` threads from now on (they are only started when first needed)."""
        while not self._inline and len(self._threads) < size:
            thread = threading.Thread(target=self._work, name=f"dispatch-send-{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        future: Future[_T] = Future()
        if self._inline:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # as a thread hands it over
                future.set_exception(exc)
            return future
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                future, fn, args = job
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as exc:  # handed to whoever waits for the result
                        future.set_exception(exc)
        finally:
            db_connections.close_all()

    def __enter__(self) -> _SendPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self.recorder.close()


def stopped_by_campaign(message_ids: list[int]) -> dict[int, dict[str, str]]:
    """Of these messages (being retried), those whose campaign was paused or cancelled while they
    were with the provider -> the fields they take instead of ``status=queued``: held (sent after a
    resume) or cancelled. Queued again, they would go out although the campaign stopped.

    The campaigns are locked first (as pausing and cancelling lock them), so a pause either
    committed before this read or waits and then finds the message queued and holds it.
    """
    rows = Message.objects.filter(pk__in=message_ids, campaign_id__isnull=False).values_list("pk", "campaign_id")
    campaign_of = {pk: campaign_id for pk, campaign_id in rows if campaign_id is not None}
    if not campaign_of:
        return {}
    states: dict[int, str] = dict(
        Campaign.objects.select_for_update().filter(pk__in=set(campaign_of.values())).values_list("pk", "state")
    )
    instead: dict[str, dict[str, str]] = {
        Campaign.State.PAUSED: {"status": Status.HELD},
        Campaign.State.CANCELLED: {"status": Status.CANCELLED, "reason": "campaign cancelled"},
    }
    return {pk: instead[states[c]] for pk, c in campaign_of.items() if states.get(c) in instead}


LOST_BEFORE_CALL = "worker lost before the provider call: queued again"
LOST_IN_CALL = "worker lost during the provider call"


def reap_stuck_sends(older_than: dt.timedelta = CLAIM) -> int:
    """Rows left in ``sending`` by a dead worker (its claim ran out ``older_than`` ago), settled from
    the journal its sending threads left (``messaging.handover``): a send the provider accepted is
    ``sent``; a message handed over without an answer on record is ``unknown``, never resent
    automatically; one never handed over is queued again (held or cancelled where its campaign
    stopped). Journal entries older than any live batch (``2 * CLAIM``) are deleted: batches do
    not delete their own, since one entry may name groups of two batches (the recorder writes
    whatever the sending threads asked for meanwhile in one). Returns how many rows were reaped."""
    now = timezone.now()
    reaped = 0
    with transaction.atomic():
        # Locked as the sending threads lock a group before naming it: either the entry came first
        # (and is read here) or the thread finds the row taken back and does not send it.
        stuck = Message.objects.filter(status=Status.SENDING, claimed_until__lt=now - older_than)
        if db_connection.features.has_select_for_update:
            stuck = stuck.select_for_update()
        rows = {pk: (attempts, attempted_at) for pk, attempts, attempted_at in
                stuck.values_list("pk", "attempts", "attempted_at")}  # fmt: skip
        if rows:
            since = min((at for _, at in rows.values() if at is not None), default=now - dt.timedelta(days=1))
            handed = {pk for pk, (_, attempted_at) in rows.items() if attempted_at is None}  # cannot tell: unknown
            accepted: dict[int, tuple[str, dt.datetime]] = {}

            def this_attempt(pk: int, entry: HandOver) -> bool:
                # Entries of an earlier attempt of the same message do not count (the attempt's
                # time and its entries' come from one worker's clock).
                attempted_at = rows[pk][1]
                return attempted_at is not None and entry.created_at >= attempted_at

            for entry in HandOver.objects.filter(created_at__gte=since - dt.timedelta(minutes=1)).iterator():
                handed.update(pk for pk in entry.handed if pk in rows and this_attempt(pk, entry))
                accepted.update((int(pk), (provider_id, entry.created_at)) for pk, provider_id in entry.accepted.items()
                                if int(pk) in rows and this_attempt(int(pk), entry))  # fmt: skip
            by_entry: dict[tuple[dt.datetime, dt.datetime], Accepted] = defaultdict(list)  # (sent at, attempt)
            for pk, (provider_id, at) in accepted.items():
                attempt = rows[pk][1]
                assert attempt is not None  # this_attempt() counted only rows with one
                sent = SendResult(pk, Outcome.SENT, provider_message_id=provider_id)
                by_entry[(at, attempt)].append((Message(pk=pk, attempts=rows[pk][0]), sent))
            for (at, attempt), sends in by_entry.items():
                write_sent(sends, at, attempt)
            unknown = [pk for pk in handed if pk not in accepted]
            never = [pk for pk in rows if pk not in handed and pk not in accepted]
            reaped = len(accepted) + sum(queue_again(never, LOST_BEFORE_CALL, now, from_status=Status.SENDING).values())
            reaped += Message.objects.filter(
                ids_in(Message, "id", unknown), value_is(Message, "status", Status.SENDING)
            ).update(status=Status.UNKNOWN, reason=LOST_IN_CALL, claimed_until=None)
            logger.warning("reaped %d message(s) of a lost worker: %d sent, %d unknown, %d queued again",
                           reaped, len(accepted), len(unknown), len(never))  # fmt: skip
        HandOver.objects.filter(created_at__lt=now - 2 * CLAIM).delete()
    return reaped


def queue_again(pks: list[int], reason: str, now: dt.datetime, *, from_status: str = Status.UNKNOWN) -> Counter[str]:
    """Queue messages again (in the caller's transaction), held or cancelled where their campaign
    stopped; only rows still in ``from_status``. Counts ``requeued``, ``held``, ``cancelled``; one
    UPDATE per outcome."""
    stopped = stopped_by_campaign(pks) if pks else {}
    groups: dict[tuple[tuple[str, str], ...], list[int]] = defaultdict(list)
    for pk in pks:
        changes = {"status": Status.QUEUED, "reason": reason, **stopped.get(pk, {})}
        groups[tuple(sorted(changes.items()))].append(pk)
    counts: Counter[str] = Counter()
    for key, ids in groups.items():
        changes = dict(key)
        updated = Message.objects.filter(ids_in(Message, "id", ids), value_is(Message, "status", from_status)).update(
            claimed_until=None, not_before=now, **changes
        )
        counts["requeued" if changes["status"] == Status.QUEUED else changes["status"]] += updated
    return counts


def default_context(message: Message) -> dict[str, Any]:
    """What templates see: the contact, the store, the order named in the message's context."""
    from storeloop.orders.models import Order

    contact = message.contact
    context: dict[str, Any] = {
        "contact": {"first_name": contact.first_name, "last_name": contact.last_name, "email": contact.email,
                    "phone": contact.phone, "country": contact.country},
        "store": {"name": message.store.name, "url": message.store.url},
        "custom": dict(message.context.get("custom") or {}),
        "order": {},
    }  # fmt: skip
    order_id = message.context.get("order_id")
    if order_id:
        order = Order.objects.filter(store_id=message.store_id, pk=order_id).first()
        if order is not None:
            context["order"] = {"number": order.number or str(order.external_id), "total": str(order.total),
                                "currency": order.currency, "status": order.status}  # fmt: skip
    return context
