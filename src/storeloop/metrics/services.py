"""``OrderMetricsUpdater``: the metrics component of design note 2A.

Customer, product and daily figures derived from the order mirror (definitions in
``metrics.definitions``), kept current by two paths that give identical rows:

* ``update_order_metrics(order_id)`` after every order event, inside the mirror's transaction,
  with bounded work (``metrics.incremental``);
* ``recalculate_customer_metrics(store_id)``, the set-based recompute of a whole store in SQL
  (``metrics.recalc``), after a bulk import or to repair.

``refresh_store_models(store_id)`` is the periodic part (``tasks.refresh_store_metrics``): it
retakes the RFM quintiles, rescoring every contact, and refits the CLV models.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from storeloop.contacts.models import Contact
from storeloop.metrics import incremental, recalc
from storeloop.metrics.clv.service import FitOutcome, fit_store_models
from storeloop.metrics.recalc import RecalcResult

__all__ = ["OrderMetricsUpdater", "RecalcResult", "RefreshResult"]


@dataclass(frozen=True)
class RefreshResult:
    store_id: int
    as_of: dt.datetime
    rfm_contacts: dict[str, int]
    clv: list[FitOutcome]

    def as_dict(self) -> dict[str, object]:
        return {
            "store_id": self.store_id,
            "as_of": self.as_of.isoformat(),
            "rfm_contacts": self.rfm_contacts,
            "clv": [outcome.as_dict() for outcome in self.clv],
        }


class OrderMetricsUpdater:
    """Keeps a store's metric tables equal to what its mirrored orders imply."""

    def update_order_metrics(self, order_id: int) -> None:
        """Bring the metrics in line with one order's current mirrored state.

        Call it inside the mirror's transaction after an order (with its lines and refunds) was
        created, updated, marked deleted or restored, for every event. Idempotent and
        order-independent: the result depends only on the mirror, so duplicates, stale and
        reordered events are harmless, and an unchanged order costs a few indexed reads. Work is
        bounded by the order's lines and its contact's orders (old and new contact when it moved).
        """
        incremental.update_order(order_id)

    def update_contact_metrics(self, contact_id: int, store_id: int | None = None) -> None:
        """Recount a contact whose orders moved without an order event: call it for both sides
        of a merge (in the merge's transaction), and for a deleted contact (then pass
        ``store_id``: it can no longer be looked up)."""
        if store_id is None:
            store_id = Contact.objects.filter(pk=contact_id).values_list("store_id", flat=True).first()
            if store_id is None:
                return
        incremental.update_contact(store_id, contact_id)

    def recalculate_customer_metrics(self, store_id: int) -> RecalcResult:
        """Recompute every metric table of the store from its mirrored orders, set-based in SQL.

        Gives exactly the rows the incremental path gives. Scores contacts against the current
        RFM thresholds (call ``refresh_store_models`` to retake them). Runs its own transactions,
        one per batch of orders and one per aggregate table: call it outside a transaction.
        """
        return recalc.recalculate_store(store_id)

    def refresh_store_models(self, store_id: int, as_of: dt.datetime | None = None) -> RefreshResult:
        """Retake the RFM quintiles (rescoring every contact) and refit the CLV models, as of
        ``as_of`` (default: now). The nightly job; also worth running after a backfill."""
        as_of = as_of or timezone.now()
        taken = recalc.refresh_rfm_thresholds(store_id, as_of)
        return RefreshResult(store_id, as_of, taken, fit_store_models(store_id, as_of))
