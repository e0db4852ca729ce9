"""What the sync service needs from a CRM, whatever the CRM."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from storeloop.crm.mapping import OrderPayload


@dataclass(frozen=True)
class Known:
    """Remote ids we already hold for an order (from its last successful sync)."""

    contact_id: str = ""
    deal_id: str = ""
    line_ids: dict[str, str] = field(default_factory=dict)


@dataclass
class PushResult:
    order_ref: str
    ok: bool
    transient: bool = False
    error: str = ""
    contact_id: str = ""
    deal_id: str = ""
    line_ids: dict[str, str] = field(default_factory=dict)


class CrmAdapter(Protocol):
    def check(self) -> None:
        """Raise unless the credentials work and the CRM is set up for us."""

    def push(self, payloads: list[OrderPayload], known: dict[str, Known]) -> list[PushResult]:
        """Upsert contacts, deals (or sales orders) and lines for ``payloads``; one result per order.

        Must be idempotent: every object is upserted by a unique key (email, order reference, line
        reference), so running it again — after a crash between the CRM's answer and our commit,
        or from two workers at once — never creates a second record.
        """

    def close(self) -> None: ...
