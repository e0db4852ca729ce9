"""Accepting, processing and replaying inbound webhook deliveries.

Accept = verify (done by the caller on raw bytes) → store → enqueue, in one transaction: a 200 is
only answered for a delivery that is committed, and the processing task becomes visible with it.
Processing happens in the worker, through the handler table in ``inbox.handlers``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from storeloop.core.bulk import insert_row
from storeloop.core.errors import NotFound, TerminalError
from storeloop.core.tasks import enqueue_on_commit
from storeloop.inbox.handlers import handler_for
from storeloop.inbox.models import InboxDelivery
from storeloop.stores.models import Store

logger = logging.getLogger("storeloop.inbox")
_ROW = (
    "source", "store_id", "topic", "delivery_id", "webhook_id", "body", "body_hash", "received_at", "status",
    "outcome", "attempts", "last_error", "processed_at",
)  # fmt: skip


@dataclass(frozen=True)
class Accepted:
    delivery_id: int | None
    duplicate: bool
    ignored: bool


def accept_delivery(
    *, source: str, store_id: int, topic: str, delivery_id: str, webhook_id: str, body: bytes
) -> Accepted:
    """Store one verified delivery; a redelivery of the same delivery id is a no-op."""
    from storeloop.inbox.tasks import process_inbox_delivery

    body_hash = hashlib.sha256(body).hexdigest()
    known = handler_for(source, topic) is not None
    now = timezone.now()
    status = InboxDelivery.Status.RECEIVED if known else InboxDelivery.Status.IGNORED
    try:
        with transaction.atomic(durable=True):
            # One prepared INSERT instead of Model.objects.create: this runs for every webhook.
            pk = insert_row(
                InboxDelivery,
                _ROW,
                (source, store_id, topic[:100], (delivery_id or body_hash)[:128], webhook_id[:64], body, body_hash,
                 now, status, "" if known else "no handler for this topic", 0, "", None),
            )  # fmt: skip
            if known:
                enqueue_on_commit(process_inbox_delivery, str(pk))
    except IntegrityError:
        return Accepted(delivery_id=None, duplicate=True, ignored=False)
    return Accepted(delivery_id=pk, duplicate=False, ignored=not known)


def process_delivery(delivery_pk: int) -> str:
    """Run the delivery's handler. Safe to run twice: handlers apply versioned snapshots."""
    row = InboxDelivery.objects.select_related("store").filter(pk=delivery_pk).first()
    if row is None:
        return "gone"
    if row.status in (InboxDelivery.Status.PROCESSED, InboxDelivery.Status.IGNORED):
        return row.status
    handler = handler_for(row.source, row.topic)
    InboxDelivery.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
    if handler is None:
        InboxDelivery.objects.filter(pk=row.pk).update(
            status=InboxDelivery.Status.IGNORED,
            outcome="no handler for this topic",
            processed_at=timezone.now(),
        )
        return InboxDelivery.Status.IGNORED
    try:
        with transaction.atomic(durable=True):
            outcome = handler(row.store, bytes(row.body))
            InboxDelivery.objects.filter(pk=row.pk).update(
                status=InboxDelivery.Status.PROCESSED,
                outcome=str(outcome)[:200],
                processed_at=timezone.now(),
                last_error="",
            )
    except TerminalError as exc:
        InboxDelivery.objects.filter(pk=row.pk).update(
            status=InboxDelivery.Status.FAILED, last_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    except Exception as exc:
        InboxDelivery.objects.filter(pk=row.pk).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return str(outcome)


def replay_delivery(*, store: Store | None, delivery_pk: int) -> InboxDelivery:
    """Process a stored delivery again (e.g. after a bug fix). Versioning keeps it harmless."""
    from storeloop.inbox.tasks import process_inbox_delivery

    with transaction.atomic(durable=True):
        qs = InboxDelivery.objects.select_for_update()
        if store is not None:
            qs = qs.filter(store=store)
        row = qs.filter(pk=delivery_pk).first()
        if row is None:
            raise NotFound(f"no delivery {delivery_pk}", code="delivery_not_found")
        row.status = InboxDelivery.Status.RECEIVED
        row.outcome = "replay requested"
        row.processed_at = None
        row.save(update_fields=["status", "outcome", "processed_at"])
        enqueue_on_commit(process_inbox_delivery, str(row.pk))
    return row


def prune_processed() -> int:
    """Delete processed and ignored deliveries past ``STORELOOP_INBOX_RETENTION_DAYS``.

    Failed and unprocessed deliveries are kept until someone looks at them.
    """
    from datetime import timedelta

    from django.conf import settings

    cutoff = timezone.now() - timedelta(days=settings.INBOX_RETENTION_DAYS)
    deleted, _ = InboxDelivery.objects.filter(
        status__in=[InboxDelivery.Status.PROCESSED, InboxDelivery.Status.IGNORED], received_at__lt=cutoff
    ).delete()
    return deleted
