"""What the fake HubSpot knows up front: object types, default properties, association types, errors.

Shapes follow the hubspot-api-python models (SimplePublicObject, BatchResponse*, StandardError,
LabelsBetweenObjectPair, PublicDefaultAssociation). Message texts HubSpot does not document are
plausible stand-ins; the client never parses message text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

# objectType path segment -> objectTypeId. Singular names and ids are accepted in paths too.
OBJECT_TYPE_IDS = {
    "contacts": "0-1",
    "companies": "0-2",
    "deals": "0-3",
    "products": "0-7",
    "line_items": "0-8",
}
_ALIASES = {
    **{name: name for name in OBJECT_TYPE_IDS},
    **{type_id: name for name, type_id in OBJECT_TYPE_IDS.items()},
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "product": "products",
    "line_item": "line_items",
    "lineitem": "line_items",
    "lineitems": "line_items",
}
LABELS = {
    "contacts": "CONTACT",
    "companies": "COMPANY",
    "deals": "DEAL",
    "products": "PRODUCT",
    "line_items": "LINE_ITEM",
}

# Per HubSpot's changelog, unique properties exist for companies, deals, tickets, custom objects
# and (since 2023) contacts. Line items and products: none, so the fake refuses them.
UNIQUE_CAPABLE = frozenset({"contacts", "companies", "deals"})
# The key each object type is deduplicated by in ``FakeHubSpot.duplicates()``.
DEDUP_KEYS = {"contacts": "email", "deals": "storeloop_order_ref", "line_items": "storeloop_line_ref"}
READ_ONLY = frozenset({"hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate"})

# HUBSPOT_DEFINED association types: (from, to) -> (default type id, every valid type id).
ASSOCIATION_TYPES: dict[tuple[str, str], tuple[int, frozenset[int]]] = {
    ("deals", "contacts"): (3, frozenset({3})),
    ("contacts", "deals"): (4, frozenset({4})),
    ("deals", "line_items"): (19, frozenset({19})),
    ("line_items", "deals"): (20, frozenset({20})),
    ("deals", "companies"): (5, frozenset({5})),
    ("companies", "deals"): (6, frozenset({6})),
    ("contacts", "companies"): (279, frozenset({1, 279})),
    ("companies", "contacts"): (280, frozenset({2, 280})),
}
INVERSE_TYPE = {3: 4, 4: 3, 19: 20, 20: 19, 5: 6, 6: 5, 1: 2, 2: 1, 279: 280, 280: 279}

_S, _N, _DT, _E = ("string", "text"), ("number", "number"), ("datetime", "date"), ("enumeration", "select")
_COMMON = {"createdate": _DT, "hs_lastmodifieddate": _DT, "hs_object_id": _N}
DEFAULT_PROPERTIES: dict[str, dict[str, tuple[str, str]]] = {
    "contacts": {
        **dict.fromkeys(
            ("email", "firstname", "lastname", "company", "website", "address", "city", "state", "zip"), _S
        ),
        **dict.fromkeys(("country", "jobtitle", "hs_language"), _S),
        "phone": ("string", "phonenumber"),
        "mobilephone": ("string", "phonenumber"),
        "lifecyclestage": _E,
        "hs_lead_status": _E,
        "hubspot_owner_id": _E,
        "lastmodifieddate": _DT,
        **_COMMON,
    },
    "deals": {
        "dealname": _S,
        "amount": _N,
        "dealstage": _E,
        "pipeline": _E,
        "closedate": _DT,
        "deal_currency_code": _E,
        "dealtype": _E,
        "description": ("string", "textarea"),
        "hubspot_owner_id": _E,
        **_COMMON,
    },
    "line_items": {
        "name": _S,
        "description": ("string", "textarea"),
        "hs_sku": _S,
        "hs_product_id": _N,
        "hs_line_item_currency_code": _E,
        **dict.fromkeys(("quantity", "price", "amount", "discount", "hs_discount_percentage", "tax"), _N),
        **_COMMON,
    },
    "companies": {"name": _S, "domain": _S, "city": _S, "country": _S, "phone": _S, **_COMMON},
    "products": {"name": _S, "description": _S, "hs_sku": _S, "price": _N, **_COMMON},
}
DEFAULT_GROUPS = {
    "contacts": "contactinformation",
    "deals": "dealinformation",
    "line_items": "lineiteminformation",
    "companies": "companyinformation",
    "products": "productinformation",
}
PROPERTY_TYPES = frozenset({"string", "number", "date", "datetime", "enumeration", "bool", "phone_number"})

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")


class CrmError(Exception):
    """A whole-request HubSpot error; rendered as the ``Error`` envelope with a correlationId."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        context: dict[str, list[str]] | None = None,
        errors: list[dict[str, Any]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.category, self.message = status, category, message
        self.context, self.errors, self.sub_category = context, errors, sub_category

    def body(self, correlation_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id,
            "category": self.category,
        }
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.errors:
            body["errors"] = self.errors
        if self.context:
            body["context"] = self.context
        return body


def object_type(segment: str) -> str:
    name = _ALIASES.get(segment.lower())
    if name is None:
        raise CrmError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {segment}")
    return name


def record_error(category: str, message: str, **extra: Any) -> dict[str, Any]:
    """A per-record StandardError (inside ``errors[]`` of a 207)."""
    return {"status": "error", "category": category, "message": message, **extra}


def invalid_value(name: str, code: str, message: str) -> dict[str, Any]:
    return {"isValid": False, "message": message, "error": code, "name": name}


def check_value(name: str, prop_type: str, value: str) -> dict[str, Any] | None:
    """The validation detail for a bad value of a property of ``prop_type`` (None when fine)."""
    if value == "":
        return None  # clears the property
    if name == "email" and not _EMAIL.match(value):
        return invalid_value(name, "INVALID_EMAIL", f"Email address {value} is invalid")
    if prop_type == "number":
        try:
            float(value)
        except ValueError:
            return invalid_value(name, "INVALID_FLOAT", f"{value} was not a valid number.")
    elif prop_type in ("date", "datetime") and not value.isdigit():
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return invalid_value(name, "INVALID_DATE", f"{value} is not a valid {prop_type}.")
    return None


def validation_error(details: list[dict[str, Any]]) -> dict[str, Any]:
    """``Property values were not valid: [...]`` with ``errors[]`` carrying machine codes."""
    rendered = ", ".join(
        orjson.dumps({"isValid": False, "message": d["message"], "error": d["error"], "name": d["name"]}).decode()
        for d in details
    )
    return {
        "category": "VALIDATION_ERROR",
        "message": f"Property values were not valid: [{rendered}]",
        "errors": [
            {"message": d["message"], "code": d["error"], "context": {"propertyName": [d["name"]]}} for d in details
        ],
    }
