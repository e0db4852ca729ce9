"""From a mirrored order to what the CRM should hold: contact, deal (or sales order), lines.

Status → stage and extra field mappings are configurable per connection; these are the defaults.
The payload's hash is what "unchanged" means: the same hash as the last successful sync makes no
API call at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from storeloop.core.money import money_str
from storeloop.crm.models import CrmConnection
from storeloop.orders.models import Order

# HubSpot's default sales pipeline stage ids. Paid (processing/completed) is won; dead is lost.
DEFAULT_HUBSPOT_STAGES = {
    "pending": "appointmentscheduled",
    "checkout-draft": "appointmentscheduled",
    "on-hold": "qualifiedtobuy",
    "processing": "closedwon",
    "completed": "closedwon",
    "cancelled": "closedlost",
    "refunded": "closedlost",
    "failed": "closedlost",
    "trash": "closedlost",
    "deleted": "closedlost",
}
# Zoho CRM's standard Deals stage picklist labels.
DEFAULT_ZOHO_STAGES = {
    "pending": "Qualification",
    "checkout-draft": "Qualification",
    "on-hold": "Needs Analysis",
    "processing": "Closed Won",
    "completed": "Closed Won",
    "cancelled": "Closed Lost",
    "refunded": "Closed Lost",
    "failed": "Closed Lost",
    "trash": "Closed Lost",
    "deleted": "Closed Lost",
}
DEFAULT_STAGES = {
    CrmConnection.Provider.HUBSPOT: DEFAULT_HUBSPOT_STAGES,
    CrmConnection.Provider.ZOHO: DEFAULT_ZOHO_STAGES,
}
# Fields a connection's field_mapping may copy onto the deal, by name.
MAPPABLE_ORDER_FIELDS = frozenset(
    {"number", "status", "payment_method", "payment_method_title", "customer_note", "currency", "is_cod"}
)


@dataclass(frozen=True)
class ContactPayload:
    email: str
    first_name: str
    last_name: str
    phone: str
    city: str
    country: str
    address: str
    zip: str
    total_spent: str = ""
    order_count: str = ""
    last_order_date: str = ""
    rfm_segment: str = ""


@dataclass(frozen=True)
class LinePayload:
    ref: str
    name: str
    quantity: int
    price: str
    amount: str
    sku: str
    product_external_id: int


@dataclass(frozen=True)
class OrderPayload:
    order_id: int
    order_ref: str
    contact: ContactPayload | None
    deal_name: str
    amount: str
    currency: str
    stage: str
    close_date: str
    status: str
    extra: dict[str, str] = field(default_factory=dict)
    lines: tuple[LinePayload, ...] = ()

    def digest(self) -> str:
        return hashlib.sha256(orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)).hexdigest()


def order_ref(order: Order) -> str:
    """Our unique key for the order in every CRM: stable, and distinct across stores."""
    return f"s{order.store_id}-{order.external_id}"


def effective_status(order: Order) -> str:
    return "deleted" if order.deleted_at is not None else order.status


def stage_for(connection: CrmConnection, status: str) -> str:
    mapping: dict[str, str] = {
        **DEFAULT_STAGES[CrmConnection.Provider(connection.provider)],
        **(connection.stage_mapping or {}),
    }
    return mapping.get(status) or mapping["pending"]


def build_payload(order: Order, connection: CrmConnection, metrics: dict[str, str] | None = None) -> OrderPayload:
    status = effective_status(order)
    net = order.total - order.refunded_total
    contact = _contact(order, metrics or {})
    extra = {
        crm_field: _text(getattr(order, source))
        for crm_field, source in (connection.field_mapping or {}).items()
        if source in MAPPABLE_ORDER_FIELDS
    }
    return OrderPayload(
        order_id=order.pk,
        order_ref=order_ref(order),
        contact=contact,
        deal_name=f"Order #{order.number or order.external_id}",
        amount=money_str(max(net, Decimal(0))),
        currency=order.currency,
        stage=stage_for(connection, status),
        close_date=(order.date_paid or order.date_created).date().isoformat(),
        status=status,
        extra=extra,
        lines=tuple(
            LinePayload(
                ref=f"{order_ref(order)}-{line.external_id}",
                name=line.name,
                quantity=line.quantity,
                price=money_str(line.subtotal / line.quantity) if line.quantity else money_str(line.subtotal),
                amount=money_str(line.total),
                sku=line.sku,
                product_external_id=line.product_external_id,
            )
            for line in sorted(order.lines.all(), key=lambda li: li.external_id)
        ),
    )


def _contact(order: Order, metrics: dict[str, str]) -> ContactPayload | None:
    contact = order.contact
    billing: dict[str, Any] = order.billing or {}
    email = contact.email if contact is not None else ""
    if not email:
        return None  # every CRM keys contacts by email: a guest without one gets no contact
    return ContactPayload(
        email=email,
        first_name=(contact.first_name if contact else "") or str(billing.get("first_name") or ""),
        last_name=(contact.last_name if contact else "") or str(billing.get("last_name") or ""),
        phone=contact.phone if contact else "",
        city=str(billing.get("city") or ""),
        country=str(billing.get("country") or ""),
        address=" ".join(str(billing.get(k) or "") for k in ("address_1", "address_2")).strip(),
        zip=str(billing.get("postcode") or ""),
        total_spent=metrics.get("total_spent", ""),
        order_count=metrics.get("order_count", ""),
        last_order_date=metrics.get("last_order_date", ""),
        rfm_segment=metrics.get("rfm_segment", ""),
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
