"""What Storeloop sends to Zoho CRM, and how Zoho's per-record upsert answers become outcomes.

Each record type knows its idempotency ``key`` (the value of the module's duplicate-check field)
and renders the Zoho field payload. Builders normalise input (lower-case emails, Zoho's mandatory
``Last_Name``, 2-decimal amounts) and reject records that could never be written.

Provider quirks handled here:
- ``Last_Name`` is mandatory on Contacts: fall back to the email's local part, then "Unknown";
- money is a JSON *number* in Zoho (``Amount``, ``List_Price``); we keep ``Decimal`` and convert late;
- lookups are ``{"id": "..."}`` objects; dates are ``YYYY-MM-DD``;
- the upsert answers ``data[]`` in input order, one entry per record; errors inside it reuse the
  top-level envelope (``code``/``details``/``message``/``status``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from storeloop.integrations.crm import RecordOutcome

from .errors import sanitize_details

logger = logging.getLogger(__name__)

ORDER_REF_FIELD = "Storeloop_Order_Ref"  # custom unique text field on Deals and Sales_Orders
MAX_UPSERT_BATCH = 100
# Zoho field lengths (standard layout); longer values are rejected with INVALID_DATA.
_LAST_NAME_MAX = 80
_NAME_MAX = 120
_SUBJECT_MAX = 255
_CENT = Decimal("0.01")

# Per-record codes worth retrying; every other per-record error fails the same way next time.
TRANSIENT_RECORD_CODES = frozenset({"TOO_MANY_REQUESTS", "INTERNAL_ERROR", "INTERNAL_SERVER_ERROR"})
MISMATCH_ERROR = "ZOHO_RESPONSE_MISMATCH: answer does not line up with the request"

Amount = Decimal | int | float | str


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """An upsertable module: its API name and the unique field the upsert matches on."""

    api_name: str
    duplicate_field: str
    custom_field: bool  # True when the operator (or ensure_fields) must create it


CONTACTS = ModuleSpec("Contacts", "Email", custom_field=False)
DEALS = ModuleSpec("Deals", ORDER_REF_FIELD, custom_field=True)
SALES_ORDERS = ModuleSpec("Sales_Orders", ORDER_REF_FIELD, custom_field=True)
PRODUCTS = ModuleSpec("Products", "Product_Code", custom_field=False)
MODULES: dict[str, ModuleSpec] = {m.api_name: m for m in (CONTACTS, DEALS, SALES_ORDERS, PRODUCTS)}


class Upsertable(Protocol):
    @property
    def key(self) -> str: ...

    def to_zoho(self) -> dict[str, Any]: ...


def money(value: Amount, name: str = "amount") -> Decimal:
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"{name} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{name} is not a finite number")
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _clean(value: str | None, limit: int) -> str:
    return (value or "").strip()[:limit]


def normalize_email(email: str) -> str:
    value = (email or "").strip().lower()
    local, sep, domain = value.partition("@")
    if not sep or not local or "." not in domain or " " in value:
        raise ValueError("a contact needs a valid email address")  # never echo the value
    return value


def _ref(order_ref: str) -> str:
    value = (order_ref or "").strip()
    if not value:
        raise ValueError("an order reference is required")
    return value


def _iso_date(value: date | str) -> str:
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(value.strip()[:10]).isoformat()
    except ValueError:
        raise ValueError("closing_date must be a date or 'YYYY-MM-DD'") from None


def _lookup(record_id: str | None) -> dict[str, str] | None:
    return {"id": str(record_id)} if record_id else None


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """A Zoho Contact keyed by (lower-cased) email. Build with :meth:`build`."""

    email: str
    last_name: str
    first_name: str = ""
    phone: str = ""
    mobile: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        email: str,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        mobile: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ContactRecord:
        normalized = normalize_email(email)
        last = _clean(last_name, _LAST_NAME_MAX) or normalized.partition("@")[0][:_LAST_NAME_MAX] or "Unknown"
        return cls(
            email=normalized,
            last_name=last,
            first_name=_clean(first_name, 40),
            phone=_clean(phone, 30),
            mobile=_clean(mobile, 30),
            extra=dict(extra or {}),
        )

    @property
    def key(self) -> str:
        return self.email

    def to_zoho(self) -> dict[str, Any]:
        body: dict[str, Any] = {**self.extra, "Email": self.email, "Last_Name": self.last_name or "Unknown"}
        for name, value in (("First_Name", self.first_name), ("Phone", self.phone), ("Mobile", self.mobile)):
            if value:
                body[name] = value
        return body


@dataclass(frozen=True, slots=True)
class DealRecord:
    """A Zoho Deal keyed by our order reference (``Storeloop_Order_Ref``, e.g. ``"s1-727"``)."""

    order_ref: str
    deal_name: str
    amount: Decimal
    stage: str
    closing_date: str
    contact_id: str | None = None
    pipeline: str | None = None
    currency: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        order_ref: str,
        *,
        deal_name: str,
        amount: Amount,
        stage: str,
        closing_date: date | str,
        contact_id: str | None = None,
        pipeline: str | None = None,
        currency: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> DealRecord:
        ref = _ref(order_ref)
        if not (stage or "").strip():
            raise ValueError("a deal needs a Stage (picklist label such as 'Closed Won')")
        return cls(
            order_ref=ref,
            deal_name=_clean(deal_name, _NAME_MAX) or f"Order {ref}",
            amount=money(amount),
            stage=stage.strip(),
            closing_date=_iso_date(closing_date),
            contact_id=contact_id or None,
            pipeline=(pipeline or "").strip() or None,
            currency=(currency or "").strip().upper() or None,
            extra=dict(extra or {}),
        )

    @property
    def key(self) -> str:
        return self.order_ref

    def to_zoho(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.extra,
            ORDER_REF_FIELD: self.order_ref,
            "Deal_Name": self.deal_name,
            "Amount": _number(self.amount),
            "Stage": self.stage,
            "Closing_Date": self.closing_date,
        }
        if self.pipeline:
            body["Pipeline"] = self.pipeline
        if self.contact_id:
            body["Contact_Name"] = _lookup(self.contact_id)
        if self.currency:  # only accepted when the org has multi-currency enabled
            body["Currency"] = self.currency
        return body


@dataclass(frozen=True, slots=True)
class OrderedItem:
    """One ``Ordered_Items`` subform row. ``product_id`` is the Zoho Product id (mandatory lookup)."""

    product_id: str
    quantity: Decimal
    list_price: Decimal
    discount: Decimal = Decimal("0.00")
    description: str = ""

    @classmethod
    def build(
        cls,
        product_id: str,
        *,
        quantity: Amount,
        list_price: Amount,
        discount: Amount = 0,
        description: str | None = None,
    ) -> OrderedItem:
        if not product_id:
            raise ValueError("an ordered item needs the Zoho product id (upsert the product first)")
        try:
            qty = Decimal(str(quantity))
        except InvalidOperation:
            raise ValueError("quantity must be positive") from None
        if not qty.is_finite() or qty <= 0:
            raise ValueError("quantity must be positive")
        return cls(
            product_id=str(product_id),
            quantity=qty,
            list_price=money(list_price, "list_price"),
            discount=money(discount, "discount"),
            description=_clean(description, 2000),
        )

    def to_zoho(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "Product_Name": {"id": self.product_id},
            "Quantity": _number(self.quantity),
            "List_Price": _number(self.list_price),
        }
        if self.discount:
            row["Discount"] = _number(self.discount)
        if self.description:
            row["Description"] = self.description
        return row


@dataclass(frozen=True, slots=True)
class SalesOrderRecord:
    """A Zoho Sales Order keyed by ``Storeloop_Order_Ref``; ``items`` fill the Ordered_Items subform."""

    order_ref: str
    subject: str
    items: tuple[OrderedItem, ...]
    status: str | None = None
    contact_id: str | None = None
    deal_id: str | None = None
    currency: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        order_ref: str,
        *,
        subject: str | None = None,
        items: Sequence[OrderedItem],
        status: str | None = None,
        contact_id: str | None = None,
        deal_id: str | None = None,
        currency: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> SalesOrderRecord:
        ref = _ref(order_ref)
        if not items:
            raise ValueError("a sales order needs at least one ordered item")
        return cls(
            order_ref=ref,
            subject=_clean(subject, _SUBJECT_MAX) or f"Order {ref}",
            items=tuple(items),
            status=(status or "").strip() or None,
            contact_id=contact_id or None,
            deal_id=deal_id or None,
            currency=(currency or "").strip().upper() or None,
            extra=dict(extra or {}),
        )

    @property
    def key(self) -> str:
        return self.order_ref

    def to_zoho(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.extra,
            ORDER_REF_FIELD: self.order_ref,
            "Subject": self.subject,
            # An upsert that updates replaces the whole subform with these rows.
            "Ordered_Items": [item.to_zoho() for item in self.items],
        }
        if self.status:
            body["Status"] = self.status
        if self.contact_id:
            body["Contact_Name"] = _lookup(self.contact_id)
        if self.deal_id:
            body["Deal_Name"] = _lookup(self.deal_id)
        if self.currency:
            body["Currency"] = self.currency
        return body


@dataclass(frozen=True, slots=True)
class ProductRecord:
    """A Zoho Product keyed by ``Product_Code`` (our SKU, or ``"woo-<id>"`` when there is none)."""

    product_code: str
    product_name: str
    unit_price: Decimal | None = None
    active: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        product_code: str,
        *,
        product_name: str,
        unit_price: Amount | None = None,
        active: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> ProductRecord:
        code = (product_code or "").strip()
        if not code:
            raise ValueError("a product needs a product code (SKU)")
        return cls(
            product_code=code[:100],
            product_name=_clean(product_name, _NAME_MAX) or code[:_NAME_MAX],
            unit_price=money(unit_price, "unit_price") if unit_price is not None else None,
            active=active,
            extra=dict(extra or {}),
        )

    @property
    def key(self) -> str:
        return self.product_code

    def to_zoho(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.extra,
            "Product_Code": self.product_code,
            "Product_Name": self.product_name,
            "Product_Active": self.active,
        }
        if self.unit_price is not None:
            body["Unit_Price"] = _number(self.unit_price)
        return body


@dataclass(frozen=True, slots=True)
class ZohoOrg:
    """The connected CRM organisation (``GET /crm/v8/org``)."""

    id: str
    company_name: str
    currency_code: str
    time_zone: str


# --- upsert answers ---------------------------------------------------------------------------------


def describe_record_error(item: Mapping[str, Any]) -> tuple[str, str]:
    """``(code, text)`` for a per-record error; text names the field, never the value."""
    code = item.get("code") if isinstance(item.get("code"), str) else "UNKNOWN_ERROR"
    message = item.get("message") if isinstance(item.get("message"), str) else "error"
    details = sanitize_details(item.get("details"))
    if code == "MULTIPLE_OR_MULTI_ERRORS" and isinstance(item.get("details"), Mapping):
        nested = item["details"].get("errors")
        if isinstance(nested, list):
            parts = [describe_record_error(e)[1] for e in nested if isinstance(e, Mapping)]
            return str(code), f"{code}: " + "; ".join(parts)
    text = f"{code}: {message}"
    if isinstance(details.get("api_name"), str):
        text += f" [{details['api_name']}]"
    if code == "DUPLICATE_DATA" and details.get("id"):
        text += f" (existing record {details['id']})"
    return str(code), text


def outcomes_from_answer(spec: ModuleSpec, chunk: Sequence[Upsertable], data: Any) -> list[RecordOutcome]:
    """One outcome per record of ``chunk``, matched by position (Zoho keeps input order)."""
    if not isinstance(data, list) or len(data) != len(chunk):
        logger.warning(
            "zoho %s upsert: answer has %s entries for %s records; marking batch for retry",
            spec.api_name,
            len(data) if isinstance(data, list) else "no",
            len(chunk),
        )
        return [RecordOutcome(key=r.key, error=MISMATCH_ERROR, transient=True) for r in chunk]
    outcomes: list[RecordOutcome] = []
    for record, item in zip(chunk, data, strict=True):
        if not isinstance(item, Mapping) or not isinstance(item.get("code") or item.get("status"), str):
            outcomes.append(RecordOutcome(key=record.key, error=MISMATCH_ERROR, transient=True))
            continue
        if item.get("code") == "SUCCESS" or item.get("status") == "success":
            details = item.get("details")
            remote_id = details.get("id") if isinstance(details, Mapping) else None
            action = item.get("action")
            if not remote_id or action not in ("insert", "update"):
                outcomes.append(RecordOutcome(key=record.key, error=MISMATCH_ERROR, transient=True))
                continue
            matched = item.get("duplicate_field")
            if action == "update" and isinstance(matched, str) and matched != spec.duplicate_field:
                # Zoho matched on another unique field (e.g. a unique Phone): still one record.
                logger.warning("zoho %s upsert matched on %s, not %s", spec.api_name, matched, spec.duplicate_field)
            outcomes.append(RecordOutcome(key=record.key, remote_id=str(remote_id), created=action == "insert"))
            continue
        code, text = describe_record_error(item)
        outcomes.append(RecordOutcome(key=record.key, error=text, transient=code in TRANSIENT_RECORD_CODES))
    return outcomes


def dedupe_by_key(records: Sequence[Upsertable]) -> list[Upsertable]:
    """Keep one record per key (the last one, at the first one's position)."""
    by_key: dict[str, Upsertable] = {}
    for record in records:
        by_key[record.key] = record
    return list(by_key.values())
