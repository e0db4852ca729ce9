"""Inputs, object types, association type ids and Storeloop's custom HubSpot properties.

All HubSpot property values travel as strings; ``None`` clears a property (sent as ``""``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ObjectType = Literal["contacts", "deals", "line_items", "companies", "products"]

CONTACTS: ObjectType = "contacts"
DEALS: ObjectType = "deals"
LINE_ITEMS: ObjectType = "line_items"

MAX_BATCH = 100  # inputs per batch call (documented for the v3 object batch endpoints)

# HUBSPOT_DEFINED association type ids (directional). The authoritative list for an account is
# ``GET /crm/v4/associations/{from}/{to}/labels``; these defaults are the same in every account.
DEAL_TO_CONTACT = 3
CONTACT_TO_DEAL = 4
DEAL_TO_COMPANY = 5
COMPANY_TO_DEAL = 6
DEAL_TO_LINE_ITEM = 19
LINE_ITEM_TO_DEAL = 20

# Our properties.
ORDER_REF = "storeloop_order_ref"  # deals: unique, the upsert key ("s1-727")
STORE_ID = "storeloop_store_id"
LINE_REF = "storeloop_line_ref"  # line items: NOT unique (HubSpot has no unique line item properties)
TOTAL_SPENT = "storeloop_total_spent"
ORDER_COUNT = "storeloop_order_count"
LAST_ORDER_DATE = "storeloop_last_order_date"
RFM_SEGMENT = "storeloop_rfm_segment"
PROPERTY_GROUP = "storeloop"
PROPERTY_GROUP_LABEL = "Storeloop"

PropertyValues = Mapping[str, str | None]


def _clean(properties: PropertyValues) -> dict[str, str]:
    return {name: "" if value is None else str(value) for name, value in properties.items()}


@dataclass(frozen=True, slots=True)
class ContactInput:
    """A contact keyed by e-mail (HubSpot lower-cases e-mails; so does the upsert here)."""

    email: str
    properties: PropertyValues = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.email

    def hubspot_properties(self) -> dict[str, str]:
        return {**_clean(self.properties), "email": normalize_email(self.email)}


@dataclass(frozen=True, slots=True)
class DealInput:
    """A deal keyed by our order reference (``storeloop_order_ref``, e.g. ``"s1-727"``).

    Typical properties: dealname, amount, deal_currency_code, pipeline, dealstage, closedate,
    storeloop_store_id.
    """

    order_ref: str
    properties: PropertyValues = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.order_ref

    def hubspot_properties(self) -> dict[str, str]:
        return {**_clean(self.properties), ORDER_REF: self.order_ref}


@dataclass(frozen=True, slots=True)
class LineItemInput:
    """A line item keyed by ``line_ref`` (unique within its deal, e.g. ``"s1-727-1"``).

    ``deal_id`` is the HubSpot id of the deal it belongs to: line items are looked up through the
    deal's associations, so the deal must be upserted first. Typical properties: name, quantity,
    price, hs_sku, hs_product_id.
    """

    line_ref: str
    deal_id: str
    properties: PropertyValues = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.line_ref

    def hubspot_properties(self) -> dict[str, str]:
        return {**_clean(self.properties), LINE_REF: self.line_ref}


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """A custom property ``ensure_properties`` creates (``POST /crm/v3/properties/{objectType}``)."""

    object_type: ObjectType
    name: str
    label: str
    type: str  # string | number | date | datetime | enumeration | bool
    field_type: str  # text | number | date | select | ...
    unique: bool = False
    description: str = ""

    def body(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": PROPERTY_GROUP,
            "hasUniqueValue": self.unique,
            "description": self.description,
        }


CUSTOM_PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec(
        DEALS, ORDER_REF, "Storeloop order ref", "string", "text", unique=True,
        description="Store-scoped WooCommerce order reference; the sync's upsert key.",
    ),
    PropertySpec(DEALS, STORE_ID, "Storeloop store id", "string", "text"),
    PropertySpec(CONTACTS, TOTAL_SPENT, "Storeloop total spent", "number", "number"),
    PropertySpec(CONTACTS, ORDER_COUNT, "Storeloop order count", "number", "number"),
    PropertySpec(CONTACTS, LAST_ORDER_DATE, "Storeloop last order date", "date", "date"),
    PropertySpec(CONTACTS, RFM_SEGMENT, "Storeloop RFM segment", "string", "text"),
    PropertySpec(
        LINE_ITEMS, LINE_REF, "Storeloop line ref", "string", "text",
        description="Store-scoped WooCommerce order line reference (unique within its deal).",
    ),
)  # fmt: skip


def normalize_email(value: str) -> str:
    return value.strip().lower()


def pair_key(from_id: str, to_id: str) -> str:
    """``RecordOutcome.key`` of an association: ``"{from_id}->{to_id}"``."""
    return f"{from_id}->{to_id}"
