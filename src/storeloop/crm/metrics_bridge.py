"""Storeloop's customer figures as CRM contact properties."""

from __future__ import annotations

from collections.abc import Iterable


def contact_properties(contact_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """``{contact_id: {"total_spent", "order_count", "last_order_date", "rfm_segment"}}``."""
    ids = list(set(contact_ids))
    if not ids:
        return {}
    from storeloop.crm.metrics_source import read_contact_metrics

    return read_contact_metrics(ids)
