"""``HubSpotPort``: what Storeloop's CRM sync needs from HubSpot.

``HubSpotClient`` (client.py) implements it over HTTP; tests and benchmarks point that client at
``FakeHubSpot``. Whole-call failures raise the errors in ``errors.py`` (transient vs terminal);
per-record failures come back as ``RecordOutcome`` with ``error`` and ``transient`` set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from storeloop.integrations.crm import RecordOutcome

from .models import ContactInput, DealInput, LineItemInput


class HubSpotPort(Protocol):
    def check_token(self) -> None:
        """A cheap authenticated call; raises ``HubSpotAuthError`` on 401/403."""

    def ensure_properties(self) -> None:
        """Create Storeloop's custom properties (and their group) where missing. Idempotent."""

    def upsert_contacts(self, inputs: Sequence[ContactInput]) -> list[RecordOutcome]:
        """Batch upsert by e-mail; one outcome per distinct ``email`` as given."""

    def upsert_deals(self, inputs: Sequence[DealInput]) -> list[RecordOutcome]:
        """Batch upsert by ``storeloop_order_ref``; one outcome per distinct order ref."""

    def upsert_line_items(self, inputs: Sequence[LineItemInput]) -> list[RecordOutcome]:
        """Create or update line items by ``line_ref`` within their deal; one outcome per ref."""

    def archive_line_items(self, ids: Iterable[str]) -> None:
        """Archive line items by HubSpot id (already archived or unknown ids are fine)."""

    def deal_line_items(self, deal_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """``{deal_id: {line_ref: line_item_id}}`` for the line items associated with each deal."""

    def associate(
        self,
        from_type: str,
        to_type: str,
        pairs: Sequence[tuple[str, str]],
        *,
        association_type_id: int | None = None,
    ) -> list[RecordOutcome]:
        """Associate ``(from_id, to_id)`` pairs (default type, or the given HUBSPOT_DEFINED type id).

        Idempotent; one outcome per distinct pair, keyed ``"{from_id}->{to_id}"``.
        """

    def search_deals_by_ref(self, refs: Iterable[str]) -> dict[str, str]:
        """``{order_ref: deal_id}`` via the search API (eventually consistent, seconds behind)."""

    def get_deals_by_ref(self, refs: Iterable[str]) -> dict[str, str]:
        """``{order_ref: deal_id}`` via batch read by the unique property (read-your-writes)."""

    def close(self) -> None: ...
