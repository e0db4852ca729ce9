"""WhatsApp's 24-hour customer-service window: recorded from inbound messages, read by the dispatcher.

Meta counts the window from the *customer's* last message; ours never extend it. Webhooks arrive
out of order and more than once, so the recorded time only ever moves forward, and a timestamp in
the future (a skewed clock) is taken as now: it must not hold the window open for longer than 24 h.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils import timezone

from storeloop.integrations.whatsapp.models import window_open
from storeloop.messaging.models import CustomerServiceWindow


def record_inbound(store_id: int, address: str, at: dt.datetime) -> bool:
    """The customer at ``address`` (E.164) wrote at ``at``; False when a later message is already on record."""
    at = min(at, timezone.now())
    for _ in range(2):  # a second round only after losing a race to create the row
        moved = CustomerServiceWindow.objects.filter(store_id=store_id, address=address, last_inbound_at__lt=at).update(
            last_inbound_at=at
        )
        if moved:
            return True
        if CustomerServiceWindow.objects.filter(store_id=store_id, address=address).exists():
            return False
        try:
            with transaction.atomic():
                CustomerServiceWindow.objects.create(store_id=store_id, address=address, last_inbound_at=at)
            return True
        except IntegrityError:
            continue
    return False


def last_inbound_times(store_id: int, addresses: Iterable[str]) -> dict[str, dt.datetime]:
    """``address -> last inbound time`` for those of ``addresses`` that ever wrote to the store."""
    wanted = {a for a in addresses if a}
    if not wanted:
        return {}
    rows = CustomerServiceWindow.objects.filter(store_id=store_id, address__in=wanted)
    return dict(rows.values_list("address", "last_inbound_at"))


def is_window_open(last_inbound_at: dt.datetime | None, now: dt.datetime | None = None) -> bool:
    """True while free text may go: less than 24 h since the customer's last message."""
    return window_open(last_inbound_at, now or timezone.now())
