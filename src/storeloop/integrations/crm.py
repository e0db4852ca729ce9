"""Result types shared by the CRM adapters (HubSpot, Zoho), free of Django imports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecordOutcome:
    """What the CRM did with one record of a batch.

    ``key`` is our idempotency key for the record (a contact's email, an order's reference), so
    callers match outcomes to inputs without relying on response order. ``transient`` tells a
    failed record worth retrying (rate limit, 5xx inside a 207) from one that will fail again.
    """

    key: str
    remote_id: str | None = None
    created: bool | None = None
    error: str | None = None
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.remote_id is not None
