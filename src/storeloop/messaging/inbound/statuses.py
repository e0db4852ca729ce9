"""Provider delivery reports applied to ``Message`` rows: forward only, so each applies at most once.

Order: (queued, sending, unknown) → sent → delivered → read. A report applies only when it moves
the message forward: delivered after read stays read, sent after delivered stays delivered (Twilio
and Meta both deliver out of order and more than once). ``failed`` applies only before delivery,
and nothing moves a failed message again. Messages that never reached a provider (suppressed,
cancelled, held) are left alone. A report also fills in a missing time of an earlier step (a late
``delivered`` after ``read`` still sets ``delivered_at``).

A report for a message the dispatcher left ``unknown`` (its worker died mid-call) is the provider
telling us it did go out: the message moves on like any other and is never sent again. A report
that arrives while the dispatcher is still writing the send's outcome wins: the dispatcher only
writes its outcome over a message that is still ``sending``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from storeloop.messaging.models import Message

Status = Message.Status
Report = Literal["sent", "delivered", "read", "failed"]
_RANK = {Status.QUEUED: 0, Status.SENDING: 0, Status.UNKNOWN: 0, Status.SENT: 1, Status.DELIVERED: 2, Status.READ: 3}
_TARGET = {"sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ}


@dataclass(frozen=True)
class DeliveryReport:
    """What a provider said about one message, at ``at``; ``error`` accompanies ``failed``."""

    status: Report
    at: dt.datetime
    error: str = ""
    provider_message_id: str = ""


def find_message(store_id: int, channel: str, *, key: str | None, provider_message_id: str | None) -> Message | None:
    """The store's message on ``channel`` named by our idempotency key, else by the provider's id.

    The key comes first: it is on the report even when the provider's answer to the send was lost.
    The row is locked (PostgreSQL) until the caller's transaction ends.
    """
    rows = Message.objects.select_for_update().filter(store_id=store_id, channel=channel)
    if key:
        try:
            parsed = uuid.UUID(key)
        except ValueError:
            parsed = None
        found = rows.filter(idempotency_key=parsed).first() if parsed else None
        if found is not None:
            return found
    if provider_message_id:
        return rows.filter(provider_message_id=provider_message_id[:200]).order_by("id").first()
    return None


def apply_report(message: Message, report: DeliveryReport) -> str:
    """Apply ``report`` to ``message`` if it moves it forward; returns what happened, e.g. ``sent->delivered``."""
    current = Status(message.status)
    if current not in _RANK:
        return f"left {current}"
    fields: dict[str, Any] = {}
    if report.provider_message_id and not message.provider_message_id:
        fields["provider_message_id"] = report.provider_message_id[:200]
    if report.status == "failed":
        if _RANK[current] >= _RANK[Status.DELIVERED]:
            outcome = f"stale failed ({current})"
        else:
            fields.update(status=Status.FAILED, last_error=report.error[:500], reason="delivery_failed",
                          claimed_until=None)  # fmt: skip
            outcome = f"{current}->failed"
    else:
        target = _TARGET[report.status]
        if message.sent_at is None:
            fields["sent_at"] = report.at
        if target in (Status.DELIVERED, Status.READ) and message.delivered_at is None:
            fields["delivered_at"] = report.at
        if target == Status.READ and message.read_at is None:
            fields["read_at"] = report.at
        if _RANK[target] > _RANK[current]:
            fields.update(status=target, claimed_until=None)
            outcome = f"{current}->{target}"
        else:
            outcome = f"stale {target} ({current})"
    if fields:
        Message.objects.filter(pk=message.pk).update(**fields)
        for name, value in fields.items():
            setattr(message, name, value)
    return outcome
