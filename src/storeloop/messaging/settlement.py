"""Settling ``unknown`` sends with the provider: was the message accepted or not?

A message is ``unknown`` when its provider call may have been accepted but we never learned the
answer: a 5xx or a timeout after the request went out, a dropped connection, a worker killed while
its batch was with the providers (the reaper, ``reap_stuck_sends``). The dispatcher never resends
such a message on its own: a second copy is worse than none. Where the provider can tell us what
it accepted, this module asks, once the send is surely over (``GRACE`` after the attempt):

- **SMS (Twilio):** the Messages list for the recipient's number. A message to that number created
  from a minute before the attempt on, whose SID no other message of ours holds, means it was
  accepted: the row becomes ``sent`` with that SID. None means Twilio never took it: the row is
  queued again and sent like any retry (the consent gate, caps and quiet hours apply again). So a
  Twilio 5xx is retried after all, and a worker killed mid-campaign leaves nobody without their text.
- **E-mail (SMTP) and WhatsApp:** an SMTP relay has nothing to ask, and the Cloud API lists no sent
  messages. Their ``unknown`` rows stay as they are, unless a status report (WhatsApp's statuses,
  a bounce) names them. That is the remaining window, documented in docs/campaigns.md.

A lookup that fails (the provider is down) leaves the row for the next run; rows older than
``HORIZON`` are no longer asked about. Rows are changed only while still ``unknown``: a status
callback that settled one first wins.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from storeloop.consent.models import Channel
from storeloop.consent.services import address_for, live_contact
from storeloop.core.errors import ApplicationError, ValidationError
from storeloop.messaging.channels.base import ChannelInterface, SettlesSends
from storeloop.messaging.dispatcher import MAX_ATTEMPTS, queue_again
from storeloop.messaging.models import Message
from storeloop.messaging.tasks import request_dispatch
from storeloop.stores.models import Store

logger = logging.getLogger("storeloop.dispatch")
Status = Message.Status

GRACE = dt.timedelta(minutes=2)  # far beyond any request's timeout: the provider has finished with it
HORIZON = dt.timedelta(days=2)  # older unknowns are history: nobody resends a two-day-old message
CLOCK_SLACK = dt.timedelta(minutes=1)  # the provider's clock is not ours (and Twilio's has whole seconds)
SETTLED_REASON = "settled: accepted by the provider"
REQUEUED_REASON = "settled: the provider never accepted it; sent again"


def settle_unknown_sends(
    channel_factory: Callable[[Store, str], ChannelInterface],
    *,
    grace: dt.timedelta = GRACE,
    horizon: dt.timedelta = HORIZON,
    limit: int = 500,
) -> Counter[str]:
    """Ask the providers about ``unknown`` messages (see the module docstring); counts by decision:
    ``sent``, ``requeued``, ``held`` or ``cancelled`` (their campaign stopped), ``failed`` (out
    of attempts), ``unsettled`` (the lookup failed: asked again next run)."""
    now = timezone.now()
    rows = list(
        Message.objects.filter(
            status=Status.UNKNOWN,
            channel=Channel.SMS,
            attempted_at__lte=now - grace,
            attempted_at__gte=now - horizon,
        )
        .select_related("store", "contact")
        .order_by("attempted_at", "id")[:limit]
    )
    counts: Counter[str] = Counter()
    by_store: dict[int, list[Message]] = defaultdict(list)
    for message in rows:
        by_store[message.store_id].append(message)
    for messages in by_store.values():
        store = messages[0].store
        try:
            channel = channel_factory(store, Channel.SMS)
        except ApplicationError:  # no SMS connection any more: nothing to ask
            counts["unsettled"] += len(messages)
            continue
        if not isinstance(channel, SettlesSends):
            counts["unsettled"] += len(messages)
            continue
        found: dict[int, tuple[str, dt.datetime | None]] = {}
        missing: list[Message] = []
        for message in messages:
            # Two unknown messages to one number must not both claim the one text Twilio took.
            candidates = _look_up(channel, message, taken={sid for sid, _ in found.values()})
            if candidates is None:
                counts["unsettled"] += 1
            elif candidates:
                found[message.pk] = candidates[0]
            else:
                missing.append(message)
        counts += _record(found, missing, now)
    return counts


def _look_up(channel: SettlesSends, message: Message, taken: set[str]) -> list[tuple[str, dt.datetime | None]] | None:
    """The provider's messages that may be this one, nearest the attempt first (none: it was never
    accepted); None when the lookup failed. ``taken``: SIDs already matched to other messages."""
    attempted = message.attempted_at
    assert attempted is not None
    to = address_for(live_contact(message.contact), message.channel)
    if not to:
        return None
    try:
        accepted = channel.accepted_since(to, attempted - CLOCK_SLACK)
    except Exception as exc:  # the provider is down or refuses: ask again next run
        logger.warning("message %s: could not ask the provider about an unknown send (%s)", message.pk,
                       type(exc).__name__)  # fmt: skip
        return None
    if not accepted:
        return []
    # A message of ours whose answer we did get holds its SID: that one is not this one (of any
    # store: stores may share a Twilio account and sender).
    taken = taken | set(
        Message.objects.filter(provider_message_id__in=[sid for sid, _ in accepted])
        .exclude(pk=message.pk)
        .values_list("provider_message_id", flat=True)
    )
    left = [(sid, created) for sid, created in accepted if sid not in taken]
    return sorted(left, key=lambda row: abs((row[1] or attempted) - attempted))


def _record(found: dict[int, tuple[str, dt.datetime | None]], missing: list[Message], now: dt.datetime) -> Counter[str]:
    counts: Counter[str] = Counter()
    with transaction.atomic():
        for pk, (sid, created) in found.items():
            counts["sent"] += Message.objects.filter(pk=pk, status=Status.UNKNOWN).update(
                status=Status.SENT, provider_message_id=sid[:200], sent_at=created or now,
                reason=SETTLED_REASON, last_error="",
            )  # fmt: skip
        spent = [m.pk for m in missing if m.attempts >= MAX_ATTEMPTS]
        if spent:
            counts["failed"] += Message.objects.filter(pk__in=spent, status=Status.UNKNOWN).update(
                status=Status.FAILED, reason="settled: out of attempts", claimed_until=None
            )
        counts += queue_again([m.pk for m in missing if m.attempts < MAX_ATTEMPTS], REQUEUED_REASON, now)
        if counts["requeued"]:
            request_dispatch()  # on commit: the texts go out now, not at the scheduler's next tick
    return counts


RESENT_REASON = "sent again by an operator: may arrive twice"
MAX_RESEND = 1000


def resend_unknown(store_id: int, message_ids: list[int], *, by: str) -> int:
    """Queue ``unknown`` messages of the store again, at an operator's word: for e-mail and WhatsApp
    nothing can tell whether the customer got them, and the operator may judge a second copy
    better than none (a worker killed mid-campaign leaves the groups it was sending ``unknown``,
    some of them never sent). Other statuses, other stores' messages and ids that do not exist are left
    alone; a stopped campaign's messages are held or cancelled. Returns how many were queued.
    The consent gate, caps and quiet hours apply again at send time."""
    if not 1 <= len(message_ids) <= MAX_RESEND:
        raise ValidationError(f"give between 1 and {MAX_RESEND} message ids", code="invalid_ids",
                              details=[{"field": "ids"}])  # fmt: skip
    now = timezone.now()
    with transaction.atomic():
        pks = list(
            Message.objects.select_for_update()
            .filter(store_id=store_id, pk__in=message_ids, status=Status.UNKNOWN)
            .values_list("pk", flat=True)
        )
        queued = queue_again(pks, RESENT_REASON, now)["requeued"]
        if queued:
            logger.warning("store %s: %s unknown message(s) queued again by %s", store_id, queued, by)
            request_dispatch()
    return queued
