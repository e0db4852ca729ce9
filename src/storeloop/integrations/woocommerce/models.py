"""Our own immutable view of WooCommerce REST v3 resources, parsed from the JSON the shop sends.

Parsing is strict about the fields we rely on and lenient about the rest: a missing optional field
gets WooCommerce's own empty value, a present field of the wrong type raises ``WooPayloadError``
naming the field (never its value, which may be personal data).

Provider quirks handled here:
- money is a string with 2 decimals (``"29.35"``) and becomes ``Decimal``, never ``float``;
  line item ``price`` is a JSON *number* (``3`` or ``8.3333``) and is read through its repr;
- dates come without a zone; ``*_gmt`` fields are UTC and become aware UTC datetimes;
- refund totals in an order's ``refunds`` list are negative strings (``"-5.00"``);
- PHP encodes an empty associative array as ``[]``, so an empty address can arrive as a list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from .errors import WooPayloadError

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class WooAddress:
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    address_1: str = ""
    address_2: str = ""
    city: str = ""
    state: str = ""
    postcode: str = ""
    country: str = ""
    email: str = ""  # billing only
    phone: str = ""  # billing; shipping since WC 5.6


@dataclass(frozen=True, slots=True)
class WooLineItem:
    id: int
    name: str
    product_id: int
    variation_id: int
    quantity: int
    subtotal: Decimal
    total: Decimal
    total_tax: Decimal
    sku: str
    price: Decimal | None
    meta_data: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class WooRefundRef:
    id: int
    reason: str
    total: Decimal  # negative, as WooCommerce sends it

    @property
    def amount(self) -> Decimal:
        """The refunded amount as a positive number."""
        return -self.total


@dataclass(frozen=True, slots=True)
class WooOrder:
    id: int
    parent_id: int
    number: str
    status: str
    currency: str
    date_created_gmt: datetime
    date_modified_gmt: datetime
    date_paid_gmt: datetime | None
    date_completed_gmt: datetime | None
    total: Decimal
    total_tax: Decimal
    shipping_total: Decimal
    discount_total: Decimal
    customer_id: int  # 0 = guest checkout
    customer_note: str
    billing: WooAddress
    shipping: WooAddress
    payment_method: str
    payment_method_title: str
    meta_data: tuple[dict[str, Any], ...]
    line_items: tuple[WooLineItem, ...]
    refunds: tuple[WooRefundRef, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_guest(self) -> bool:
        return self.customer_id == 0

    @property
    def refunded_total(self) -> Decimal:
        """Sum of refunds as a positive amount."""
        return sum((r.amount for r in self.refunds), ZERO)


@dataclass(frozen=True, slots=True)
class WooCustomer:
    id: int
    email: str
    first_name: str
    last_name: str
    username: str
    role: str
    date_created_gmt: datetime | None
    date_modified_gmt: datetime | None  # null for users never edited
    billing: WooAddress
    shipping: WooAddress
    is_paying_customer: bool
    meta_data: tuple[dict[str, Any], ...]
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class WooProduct:
    id: int
    name: str
    slug: str
    sku: str
    type: str  # simple | variable | grouped | external | variation
    status: str
    parent_id: int
    price: Decimal | None  # "" for products without a price
    regular_price: Decimal | None
    sale_price: Decimal | None
    date_created_gmt: datetime | None
    date_modified_gmt: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class WooWebhook:
    id: int
    name: str
    status: str  # active | paused | disabled
    topic: str
    resource: str
    event: str
    delivery_url: str
    hooks: tuple[str, ...]
    date_created_gmt: datetime | None
    date_modified_gmt: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)


# --- field readers ---------------------------------------------------------------------------------

_MISSING = object()


def _bad(path: str, what: str) -> WooPayloadError:
    return WooPayloadError(f"malformed WooCommerce payload: {path}: {what}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):  # the exact check first: it is cheap
        raise _bad(path, f"expected an object, got {_type_name(value)}")
    return value  # type: ignore[no-any-return]


def _int(d: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> int:
    value = d.get(key, _MISSING)
    if type(value) is int:  # the usual case, before the checks below
        return value
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise _bad(f"{path}.{key}", "required integer is missing")
        return int(default)
    if isinstance(value, bool):
        raise _bad(f"{path}.{key}", "expected an integer, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        # Some plugins hand ids back as numeric strings.
        return int(value.strip())
    raise _bad(f"{path}.{key}", f"expected an integer, got {_type_name(value)}")


def _str(d: Mapping[str, Any], key: str, path: str, default: str | None = "", *, lenient: bool = False) -> str:
    value = d.get(key, _MISSING)
    if type(value) is str:  # the usual case, before the checks below
        return value
    if value is _MISSING or value is None:
        if default is None:
            raise _bad(f"{path}.{key}", "required string is missing")
        return default
    if isinstance(value, str):
        return value
    if lenient and isinstance(value, int) and not isinstance(value, bool):
        # e.g. a postcode or order number stored as int by an importer.
        return str(value)
    raise _bad(f"{path}.{key}", f"expected a string, got {_type_name(value)}")


def _to_decimal(value: Any, path: str) -> Decimal:
    if isinstance(value, bool):
        raise _bad(path, "expected a decimal, got bool")
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)  # shortest repr round-trips the JSON literal (e.g. 8.33 -> "8.33")
    else:
        raise _bad(path, f"expected a decimal string, got {_type_name(value)}")
    result = _decimal(text)
    if result is None:
        raise _bad(path, "not a valid decimal")
    if not result.is_finite():
        raise _bad(path, "not a finite decimal")
    return result


@lru_cache(maxsize=8192)  # Decimal is immutable, and a shop's amounts repeat ("0.00", prices, shipping)
def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _money(d: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> Decimal:
    value = d.get(key, _MISSING)
    if type(value) is str:  # the usual case; anything unusual takes _to_decimal's checks
        result = _decimal(value.strip())
        if result is not None and result.is_finite():
            return result
    if value is _MISSING or value is None:
        if required:
            raise _bad(f"{path}.{key}", "required amount is missing")
        return ZERO
    return _to_decimal(value, f"{path}.{key}")


def _money_or_none(d: Mapping[str, Any], key: str, path: str) -> Decimal | None:
    value = d.get(key)
    if value is None or value == "":
        return None
    return _to_decimal(value, f"{path}.{key}")


def parse_wc_datetime(value: str, path: str = "date") -> datetime:
    """A WooCommerce ``*_gmt`` date (``YYYY-MM-DDTHH:MM:SS``, no zone) as an aware UTC datetime."""
    parsed = _utc(value)
    if parsed is None:
        raise _bad(path, "not an ISO 8601 date")
    return parsed


# WooCommerce's own form: read as UTC in one step, several times cheaper than parse + replace().
_PLAIN_GMT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


def _utc(value: str) -> datetime | None:
    text = value.strip()
    if _PLAIN_GMT.fullmatch(text):
        try:
            return datetime.fromisoformat(text + "+00:00")
        except ValueError:  # e.g. a 13th month: the full path says so
            pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _dt(d: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> datetime | None:
    value = d.get(key)
    if value is None or value == "":
        if required:
            raise _bad(f"{path}.{key}", "required date is missing")
        return None
    if not isinstance(value, str):
        raise _bad(f"{path}.{key}", f"expected a date string, got {_type_name(value)}")
    parsed = _utc(value)
    if parsed is None:
        raise _bad(f"{path}.{key}", "not an ISO 8601 date")
    return parsed


def _req_dt(d: Mapping[str, Any], key: str, path: str) -> datetime:
    value = _dt(d, key, path, required=True)
    assert value is not None
    return value


def _list(d: Mapping[str, Any], key: str, path: str) -> Sequence[Any]:
    value = d.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad(f"{path}.{key}", f"expected a list, got {_type_name(value)}")
    return value


def _meta(d: Mapping[str, Any], path: str) -> tuple[dict[str, Any], ...]:
    items = _list(d, "meta_data", path)
    if not items:
        return ()
    # The element path is only built for a bad element.
    return tuple(
        dict(m) if type(m) is dict else dict(_mapping(m, f"{path}.meta_data[{i}]")) for i, m in enumerate(items)
    )


_ADDRESS_FIELDS = (
    "first_name", "last_name", "company", "address_1", "address_2", "city", "state", "postcode", "country", "email",
    "phone",
)  # fmt: skip


def _address(d: Mapping[str, Any], key: str, path: str) -> WooAddress:
    value = d.get(key)
    if value is None or value == []:
        return WooAddress()
    if type(value) is dict:
        # The usual case: every field a string or missing. Anything else takes the checks below.
        values = [value.get(name, "") for name in _ADDRESS_FIELDS]
        if all(type(v) is str for v in values):
            return WooAddress(*values)
    a = _mapping(value, f"{path}.{key}")
    p = f"{path}.{key}"
    return WooAddress(
        first_name=_str(a, "first_name", p, lenient=True),
        last_name=_str(a, "last_name", p, lenient=True),
        company=_str(a, "company", p, lenient=True),
        address_1=_str(a, "address_1", p, lenient=True),
        address_2=_str(a, "address_2", p, lenient=True),
        city=_str(a, "city", p, lenient=True),
        state=_str(a, "state", p, lenient=True),
        postcode=_str(a, "postcode", p, lenient=True),
        country=_str(a, "country", p, lenient=True),
        email=_str(a, "email", p, lenient=True),
        phone=_str(a, "phone", p, lenient=True),
    )


def _line_item(value: Any, path: str) -> WooLineItem:
    d = _mapping(value, path)
    price = d.get("price")
    return WooLineItem(
        id=_int(d, "id", path),
        name=_str(d, "name", path),
        product_id=_int(d, "product_id", path, 0),
        variation_id=_int(d, "variation_id", path, 0),
        quantity=_int(d, "quantity", path),
        subtotal=_money(d, "subtotal", path),
        total=_money(d, "total", path, required=True),
        total_tax=_money(d, "total_tax", path),
        sku=_str(d, "sku", path),
        price=None if price is None or price == "" else _to_decimal(price, f"{path}.price"),
        meta_data=_meta(d, path),
    )


def _refund(value: Any, path: str) -> WooRefundRef:
    d = _mapping(value, path)
    return WooRefundRef(
        id=_int(d, "id", path),
        reason=_str(d, "reason", path),
        total=_money(d, "total", path, required=True),
    )


# --- public parsers --------------------------------------------------------------------------------


def parse_order(data: Any) -> WooOrder:
    """Parse one order as ``GET /orders/{id}`` (or an order webhook) returns it."""
    p = "order"
    d = _mapping(data, p)
    return WooOrder(
        id=_int(d, "id", p),
        parent_id=_int(d, "parent_id", p, 0),
        number=_str(d, "number", p, default=str(d.get("id", "")), lenient=True),
        status=_str(d, "status", p, default=None),
        currency=_str(d, "currency", p, default=None),
        date_created_gmt=_req_dt(d, "date_created_gmt", p),
        date_modified_gmt=_req_dt(d, "date_modified_gmt", p),
        date_paid_gmt=_dt(d, "date_paid_gmt", p),
        date_completed_gmt=_dt(d, "date_completed_gmt", p),
        total=_money(d, "total", p, required=True),
        total_tax=_money(d, "total_tax", p),
        shipping_total=_money(d, "shipping_total", p),
        discount_total=_money(d, "discount_total", p),
        customer_id=_int(d, "customer_id", p, 0),
        customer_note=_str(d, "customer_note", p),
        billing=_address(d, "billing", p),
        shipping=_address(d, "shipping", p),
        payment_method=_str(d, "payment_method", p),
        payment_method_title=_str(d, "payment_method_title", p),
        meta_data=_meta(d, p),
        line_items=tuple(_line_item(li, f"{p}.line_items[{i}]") for i, li in enumerate(_list(d, "line_items", p))),
        refunds=tuple(_refund(r, f"{p}.refunds[{i}]") for i, r in enumerate(_list(d, "refunds", p))),
        raw=dict(d),
    )


def parse_customer(data: Any) -> WooCustomer:
    """Parse one customer as ``GET /customers/{id}`` (or a customer webhook) returns it."""
    p = "customer"
    d = _mapping(data, p)
    return WooCustomer(
        id=_int(d, "id", p),
        email=_str(d, "email", p),
        first_name=_str(d, "first_name", p),
        last_name=_str(d, "last_name", p),
        username=_str(d, "username", p),
        role=_str(d, "role", p),
        date_created_gmt=_dt(d, "date_created_gmt", p),
        date_modified_gmt=_dt(d, "date_modified_gmt", p),
        billing=_address(d, "billing", p),
        shipping=_address(d, "shipping", p),
        is_paying_customer=bool(d.get("is_paying_customer", False)),
        meta_data=_meta(d, p),
        raw=dict(d),
    )


def parse_product(data: Any) -> WooProduct:
    """Parse one product or variation as ``GET /products/{id}`` returns it."""
    p = "product"
    d = _mapping(data, p)
    return WooProduct(
        id=_int(d, "id", p),
        name=_str(d, "name", p),
        slug=_str(d, "slug", p),
        sku=_str(d, "sku", p),
        type=_str(d, "type", p, default="simple"),
        status=_str(d, "status", p, default="publish"),
        parent_id=_int(d, "parent_id", p, 0),
        price=_money_or_none(d, "price", p),
        regular_price=_money_or_none(d, "regular_price", p),
        sale_price=_money_or_none(d, "sale_price", p),
        date_created_gmt=_dt(d, "date_created_gmt", p),
        date_modified_gmt=_dt(d, "date_modified_gmt", p),
        raw=dict(d),
    )


def parse_webhook(data: Any) -> WooWebhook:
    """Parse one webhook resource (``/webhooks``). The secret is write-only and never present."""
    p = "webhook"
    d = _mapping(data, p)
    hooks = _list(d, "hooks", p)
    for i, hook in enumerate(hooks):
        if not isinstance(hook, str):
            raise _bad(f"{p}.hooks[{i}]", f"expected a string, got {_type_name(hook)}")
    topic = _str(d, "topic", p, default=None)
    resource, _, event = topic.partition(".")
    return WooWebhook(
        id=_int(d, "id", p),
        name=_str(d, "name", p),
        status=_str(d, "status", p, default=None),
        topic=topic,
        resource=_str(d, "resource", p, default=resource),
        event=_str(d, "event", p, default=event),
        delivery_url=_str(d, "delivery_url", p),
        hooks=tuple(hooks),
        date_created_gmt=_dt(d, "date_created_gmt", p),
        date_modified_gmt=_dt(d, "date_modified_gmt", p),
        raw=dict(d),
    )
