"""``OrderSyncService``: keeps HubSpot and Zoho in step with the mirrored orders (design note 2A).

Order events mark the order's sync record ``pending`` in the mirror's own transaction and make sure
one drain task per connection is queued. The drain claims due records in batches of 100 and
pushes them through the connection's adapter with the batch endpoints, inside the account's shared
rate budget. Per record: an unchanged payload (same hash as the last success) makes no API call;
a transient failure is retried with back-off; a terminal one is dead until someone resyncs it.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from storeloop.core.errors import NotFound, TerminalError, TransientError
from storeloop.core.tasks import enqueue_on_commit
from storeloop.crm.adapters.base import CrmAdapter, Known, PushResult
from storeloop.crm.mapping import OrderPayload, build_payload
from storeloop.crm.models import CrmConnection, CrmSyncAttempt, CrmSyncRecord
from storeloop.orders.models import Order

logger = logging.getLogger("storeloop.crm")
State = CrmSyncRecord.State
BATCH = 100
MAX_ATTEMPTS = 8
CLAIM = dt.timedelta(minutes=5)
DRAIN_BUDGET_SECONDS = 60.0

AdapterFactory = Callable[[CrmConnection], CrmAdapter]


def _default_factory(connection: CrmConnection) -> CrmAdapter:
    from storeloop.crm.adapters.factory import adapter_for

    return adapter_for(connection)


class CredentialsRevoked(TerminalError):
    """The CRM says our credentials are no longer valid: the connection is marked broken."""


# --- marking work ----------------------------------------------------------------------------------


def mark_orders_changed(store_id: int, order_ids: Iterable[int]) -> int:
    """Mark the orders' sync records pending for every active connection of the store.

    Call inside the transaction that changed the orders; the drain is queued on commit. Returns
    how many records were marked.
    """
    ids = list(order_ids)
    connections = list(CrmConnection.objects.filter(store_id=store_id, status=CrmConnection.Status.ACTIVE))
    if not ids or not connections:
        return 0
    marked = 0
    for connection in connections:
        existing = set(
            CrmSyncRecord.objects.filter(connection=connection, order_id__in=ids).values_list("order_id", flat=True)
        )
        CrmSyncRecord.objects.filter(connection=connection, order_id__in=existing).exclude(state=State.PENDING).update(
            state=State.PENDING, next_attempt_at=None, updated_at=timezone.now()
        )
        CrmSyncRecord.objects.bulk_create(
            [CrmSyncRecord(order_id=i, connection=connection) for i in ids if i not in existing], batch_size=500
        )
        marked += len(ids)
        schedule_drain(connection)
    return marked


def schedule_drain(connection: CrmConnection, delay_seconds: float = 1.0) -> None:
    """Queue one drain for the connection unless one is already queued (debounces bursts)."""
    from storeloop.crm.tasks import drain_crm_connection

    claimed = CrmConnection.objects.filter(pk=connection.pk, drain_scheduled=False).update(drain_scheduled=True)
    if claimed:
        enqueue_on_commit(
            drain_crm_connection, str(connection.pk), run_after=timezone.now() + dt.timedelta(seconds=delay_seconds)
        )


# --- the service -----------------------------------------------------------------------------------


class OrderSyncService:
    """Sync orders to every CRM connected to their store."""

    def __init__(self, adapter_factory: AdapterFactory = _default_factory) -> None:
        self.adapter_factory = adapter_factory

    def sync_order(self, order_id: int, *, force: bool = False) -> dict[str, str]:
        """Sync one order now to each active connection; returns the outcome per provider."""
        order = Order.objects.filter(pk=order_id).first()
        if order is None:
            raise NotFound(f"no order {order_id}", code="order_not_found")
        outcomes: dict[str, str] = {}
        for connection in CrmConnection.objects.filter(store_id=order.store_id, status=CrmConnection.Status.ACTIVE):
            with transaction.atomic():
                record, _ = CrmSyncRecord.objects.get_or_create(order=order, connection=connection)
            counts = self.sync_orders_batch(connection.pk, [record.pk], force=force)
            outcomes[connection.provider] = next(iter(counts), "unchanged")
        return outcomes

    def handle_status_change(self, order_id: int, old_status: str, new_status: str) -> None:
        """An order's status moved (or it was refunded, cancelled, deleted): move the deal.

        The stage comes from the connection's status → stage mapping; refunds lower the amount to
        the net. The change is queued like any order event and pushed by the drain.
        """
        order = Order.objects.filter(pk=order_id).only("id", "store_id").first()
        if order is None or old_status == new_status:
            return
        with transaction.atomic():
            mark_orders_changed(order.store_id, [order.pk])

    def sync_orders_batch(self, connection_id: int, record_ids: Sequence[int], *, force: bool = False) -> Counter[str]:
        """Push up to 100 records of one connection in one set of batch calls."""
        connection = CrmConnection.objects.get(pk=connection_id)
        records = list(
            CrmSyncRecord.objects.filter(pk__in=record_ids, connection=connection)
            .select_related("order__contact")
            .prefetch_related("order__lines")
        )
        counts: Counter[str] = Counter()
        if not records:
            return counts
        metrics = _contact_metrics([r.order.contact_id for r in records if r.order.contact_id])
        payloads = {r.pk: build_payload(r.order, connection, metrics.get(r.order.contact_id or 0)) for r in records}
        unchanged = [
            r for r in records if not force and r.state == State.SYNCED and r.payload_hash == payloads[r.pk].digest()
        ]
        unchanged += [
            r for r in records
            if not force and r.state == State.PENDING and r.payload_hash == payloads[r.pk].digest() and r.synced_at
        ]  # fmt: skip
        todo = [r for r in records if r not in unchanged]
        now = timezone.now()
        if unchanged:
            with transaction.atomic():
                CrmSyncRecord.objects.filter(pk__in=[r.pk for r in unchanged]).update(
                    state=State.SYNCED, claimed_until=None, updated_at=now
                )
                CrmSyncAttempt.objects.bulk_create([CrmSyncAttempt(record=r, outcome="unchanged") for r in unchanged])
            counts["unchanged"] += len(unchanged)
        if not todo:
            return counts
        started = time.monotonic()
        adapter = self.adapter_factory(connection)
        try:
            known = {
                payloads[r.pk].order_ref: Known(r.remote_contact_id, r.remote_deal_id, dict(r.remote_line_ids or {}))
                for r in todo
            }
            results = {res.order_ref: res for res in adapter.push([payloads[r.pk] for r in todo], known)}
        except CredentialsRevoked as exc:
            _mark_broken(connection, str(exc))
            _record_failure(todo, str(exc), transient=True)
            raise
        except TransientError as exc:
            _record_failure(todo, f"{type(exc).__name__}: {exc}", transient=True)
            counts["failed"] += len(todo)
            raise
        except TerminalError as exc:
            _record_failure(todo, f"{type(exc).__name__}: {exc}", transient=False)
            counts["dead"] += len(todo)
            return counts
        finally:
            adapter.close()
        elapsed_ms = int((time.monotonic() - started) * 1000)
        counts.update(_record_results(todo, payloads, results, elapsed_ms))
        return counts


def _contact_metrics(contact_ids: list[int]) -> dict[int, dict[str, str]]:
    """Storeloop's figures for the contacts, as CRM property strings (empty when not computed)."""
    from storeloop.crm.metrics_bridge import contact_properties

    return contact_properties(contact_ids)


def _backoff(attempts: int) -> dt.timedelta:
    ceiling = min(3600.0, 30.0 * 2 ** (attempts - 1))
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _record_results(
    records: list[CrmSyncRecord], payloads: dict[int, OrderPayload], results: dict[str, PushResult], elapsed_ms: int
) -> Counter[str]:
    counts: Counter[str] = Counter()
    now = timezone.now()
    history: list[CrmSyncAttempt] = []
    with transaction.atomic():
        for record in records:
            payload = payloads[record.pk]
            result = results.get(payload.order_ref) or PushResult(payload.order_ref, ok=False, error="no answer")
            record.attempts += 1
            record.claimed_until = None
            if result.ok:
                record.state = State.SYNCED
                record.remote_contact_id = result.contact_id or record.remote_contact_id
                record.remote_deal_id = result.deal_id or record.remote_deal_id
                record.remote_line_ids = result.line_ids or record.remote_line_ids
                record.payload_hash = payload.digest()
                record.last_error = ""
                record.synced_at = now
                record.next_attempt_at = None
                outcome = "synced"
            elif result.transient and record.attempts < MAX_ATTEMPTS:
                record.state = State.FAILED
                record.last_error = result.error[:2000]
                record.next_attempt_at = now + _backoff(record.attempts)
                outcome = "failed"
            else:
                record.state = State.DEAD
                record.last_error = result.error[:2000]
                record.next_attempt_at = None
                outcome = "dead"
            counts[outcome] += 1
            history.append(
                CrmSyncAttempt(record=record, outcome=outcome, error=result.error[:2000], duration_ms=elapsed_ms)
            )
            record.save()
        CrmSyncAttempt.objects.bulk_create(history)
    return counts


def _record_failure(records: list[CrmSyncRecord], error: str, *, transient: bool) -> None:
    now = timezone.now()
    with transaction.atomic():
        for record in records:
            record.attempts += 1
            record.claimed_until = None
            record.last_error = error[:2000]
            if transient and record.attempts < MAX_ATTEMPTS:
                record.state = State.FAILED
                record.next_attempt_at = now + _backoff(record.attempts)
            else:
                record.state = State.DEAD
                record.next_attempt_at = None
            record.save()
        CrmSyncAttempt.objects.bulk_create(
            [CrmSyncAttempt(record=r, outcome=r.state, error=error[:2000]) for r in records]
        )


def _mark_broken(connection: CrmConnection, reason: str) -> None:
    CrmConnection.objects.filter(pk=connection.pk).update(
        status=CrmConnection.Status.BROKEN, broken_reason=reason[:2000], updated_at=timezone.now()
    )
    logger.error("CRM connection %s (%s) is broken: reconnect it", connection.pk, connection.provider)


# --- draining the queue ----------------------------------------------------------------------------


def due_records(connection_id: int, now: dt.datetime) -> Q:
    return (
        Q(connection_id=connection_id)
        & (Q(state=State.PENDING) | Q(state=State.FAILED, next_attempt_at__lte=now))
        & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    )


def claim_batch(connection_id: int, size: int = BATCH) -> list[int]:
    """Claim up to ``size`` due records for this drain (SKIP LOCKED on PostgreSQL)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            CrmSyncRecord.objects.select_for_update(skip_locked=True)
            .filter(due_records(connection_id, now))
            .order_by("id")
            .values_list("pk", flat=True)[:size]
        )
        CrmSyncRecord.objects.filter(pk__in=ids).update(claimed_until=now + CLAIM)
    return ids


def drain_connection(
    connection_id: int, *, service: OrderSyncService | None = None, budget_seconds: float = DRAIN_BUDGET_SECONDS
) -> Counter[str]:
    """Push every due record of the connection, batch by batch, for up to ``budget_seconds``."""
    service = service or OrderSyncService()
    CrmConnection.objects.filter(pk=connection_id).update(drain_scheduled=False)
    connection = CrmConnection.objects.filter(pk=connection_id).first()
    counts: Counter[str] = Counter()
    if connection is None or connection.status != CrmConnection.Status.ACTIVE:
        return counts
    deadline = time.monotonic() + budget_seconds
    while time.monotonic() < deadline:
        ids = claim_batch(connection_id)
        if not ids:
            return counts
        counts.update(service.sync_orders_batch(connection_id, ids))
    # Out of time with work left: hand over to a fresh drain rather than hog the worker.
    with transaction.atomic():
        schedule_drain(connection, delay_seconds=0)
    return counts


def resync(
    *,
    store_id: int,
    order_ids: Iterable[int] | None = None,
    states: Iterable[str] | None = None,
    everything: bool = False,
) -> int:
    """Queue records again: given orders, records in given states (e.g. failed, dead), or all."""
    with transaction.atomic():
        orders = Order.objects.filter(store_id=store_id)
        if order_ids is not None:
            orders = orders.filter(pk__in=list(order_ids))
        elif states is not None:
            orders = orders.filter(crm_syncs__state__in=list(states))
        elif not everything:
            return 0
        ids = list(orders.values_list("pk", flat=True).distinct())
        # A resync is forced: clear the hash so even an unchanged payload is pushed again.
        CrmSyncRecord.objects.filter(order_id__in=ids).update(payload_hash="", attempts=0)
        return mark_orders_changed(store_id, ids)
