"""Reads the metrics app's per-contact figures for CRM properties."""

from __future__ import annotations

from decimal import Decimal

from storeloop.core.money import money_str


def read_contact_metrics(contact_ids: list[int]) -> dict[int, dict[str, str]]:
    from storeloop.metrics.models import ContactMetrics

    out: dict[int, dict[str, str]] = {}
    # A contact who bought in several currencies is described by the one with most orders:
    # CRMs hold one number per property, and currencies are never added together.
    rows = ContactMetrics.objects.filter(contact_id__in=contact_ids).order_by("contact_id", "-order_count", "currency")
    for row in rows:
        if row.contact_id in out:
            continue
        out[row.contact_id] = {
            "total_spent": money_str(Decimal(row.net_e4) / 10_000),
            "order_count": str(row.order_count),
            "last_order_date": row.last_order_at.date().isoformat(),
            "rfm_segment": row.segment,
        }
    return out
