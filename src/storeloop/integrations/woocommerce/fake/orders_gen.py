"""Order generation: the REST v3 order shape, and the lazy, deterministic order history.

Historical order ``i`` (id ``base_id + i``) is a pure function of (seed, i): nothing is stored until
an order is changed. Its ``date_created_gmt`` and ``date_modified_gmt`` both increase strictly with
``i`` (modified = created + a delay shorter than the gap to the next order), so date and modified
windows over a million orders are two binary searches.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any, Literal

from .catalogue import Sellable
from .people import Person, billing_of, make_person, shipping_of
from .util import h, money, q2, set_date

RefundKind = Literal["none", "partial", "full"]
TAX_RATE = Decimal("0.19")
PAYMENT_TITLES = {
    "cod": "Cash on delivery",
    "stripe": "Credit Card (Stripe)",
    "paypal": "PayPal",
    "bacs": "Direct bank transfer",
}
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "INR": "₹", "JPY": "¥", "PLN": "zł", "BRL": "R$"}
ORDER_STATUSES = frozenset(
    {
        "pending",
        "processing",
        "on-hold",
        "completed",
        "cancelled",
        "refunded",
        "failed",
        "trash",
        "checkout-draft",
    }
)
_NOTES = (
    "Bitte beim Nachbarn abgeben.",
    "Please call before delivery 📞",
    "Ne pas sonner, bébé dort.",
    "Entregar después de las 18h",
    "置き配希望",
    "Gift wrap please 🎁",
)
_REFUND_REASONS = (
    "",
    "Damaged in transit",
    "Artikel beschädigt",
    "Customer changed mind",
    "Falsche Größe – Umtausch",
)
_UAS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36",
)
CUSTOMER_BASE_ID = 2  # user 1 is the shop admin
LAZY_ITEM_BASE = 100_000_000
LAZY_REFUND_BASE = 50_000_000


@dataclass
class OrderRecord:
    """One stored order: ``data`` is the REST shape minus computed links; times are epoch seconds."""

    data: dict[str, Any]
    created_ts: int
    modified_ts: int
    prev_status: str | None = None  # status before trashing, restored by untrash

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])


def _alnum(rng: random.Random, n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


class OrderBuilder:
    """Builds order dicts with WooCommerce's arithmetic: line totals, coupon, shipping, 19 % VAT (EU)."""

    def __init__(self, *, tz: tzinfo, currency: str, sellables: list[Sellable]) -> None:
        self.tz = tz
        self.currency = currency
        self.sellables = sellables

    def pick_items(self, rng: random.Random) -> list[tuple[Sellable, int]]:
        count = rng.choices((1, 2, 3, 4), weights=(50, 30, 13, 7))[0]
        chosen = rng.sample(self.sellables, count)
        return [(s, rng.choices((1, 2, 3), weights=(80, 15, 5))[0]) for s in chosen]

    def build(
        self,
        *,
        order_id: int,
        rng: random.Random,
        person: Person,
        customer_id: int,
        status: str,
        payment_method: str,
        created_ts: int,
        modified_ts: int,
        items: list[tuple[Sellable, int]],
        item_ids: Iterator[int],
        coupon: bool = False,
        customer_note: str = "",
        refund: RefundKind = "none",
        refund_id: int = 0,
    ) -> OrderRecord:
        rate = TAX_RATE if person.taxed else Decimal(0)
        lines: list[dict[str, Any]] = []
        for sellable, qty in items:
            subtotal = q2(sellable.price * qty)
            total = q2(subtotal * Decimal("0.9")) if coupon else subtotal
            subtotal_tax, total_tax = q2(subtotal * rate), q2(total * rate)
            lines.append(
                {
                    "id": next(item_ids),
                    "name": sellable.name,
                    "product_id": sellable.product_id,
                    "variation_id": sellable.variation_id,
                    "quantity": qty,
                    "tax_class": "",
                    "subtotal": money(subtotal),
                    "subtotal_tax": money(subtotal_tax),
                    "total": money(total),
                    "total_tax": money(total_tax),
                    "taxes": [{"id": 1, "total": money(total_tax), "subtotal": money(subtotal_tax)}] if rate else [],
                    "meta_data": [],
                    "sku": sellable.sku,
                    "price": float(total / qty),  # a JSON number in WooCommerce, unlike the money strings
                    "image": {"id": "", "src": ""},
                    "parent_name": None,
                }
            )
        items_total = sum((Decimal(li["total"]) for li in lines), Decimal(0))
        cart_tax = sum((Decimal(li["total_tax"]) for li in lines), Decimal(0))
        discount = sum((Decimal(li["subtotal"]) - Decimal(li["total"]) for li in lines), Decimal(0))
        discount_tax = sum((Decimal(li["subtotal_tax"]) - Decimal(li["total_tax"]) for li in lines), Decimal(0))
        shipping_lines: list[dict[str, Any]] = []
        shipping_total = shipping_tax = Decimal(0)
        if not all(s.virtual for s, _ in items):
            if person.country != "DE":
                method, title, shipping_total = "flat_rate", "International", Decimal("9.90")
            elif items_total >= 50:
                method, title = "free_shipping", "Free shipping"
            else:
                method, title, shipping_total = "flat_rate", "Flat rate", Decimal("4.90")
            shipping_tax = q2(shipping_total * rate)
            shipping_lines.append(
                {
                    "id": next(item_ids),
                    "method_title": title,
                    "method_id": method,
                    "instance_id": "1",
                    "total": money(shipping_total),
                    "total_tax": money(shipping_tax),
                    "taxes": [{"id": 1, "total": money(shipping_tax), "subtotal": ""}] if rate else [],
                    "meta_data": [],
                }
            )
        total_tax = cart_tax + shipping_tax
        grand_total = items_total + shipping_total + total_tax
        tax_lines = (
            [
                {
                    "id": next(item_ids),
                    "rate_code": f"{person.country}-VAT-1",
                    "rate_id": 1,
                    "label": "VAT",
                    "compound": False,
                    "tax_total": money(cart_tax),
                    "shipping_tax_total": money(shipping_tax),
                    "rate_percent": 19,
                    "meta_data": [],
                }
            ]
            if rate
            else []
        )
        coupon_lines = (
            [
                {
                    "id": next(item_ids),
                    "code": "welcome10",
                    "discount": money(discount),
                    "discount_tax": money(discount_tax),
                    "meta_data": [],
                }
            ]
            if coupon
            else []
        )
        refunds: list[dict[str, Any]] = []
        if refund != "none" and grand_total > 0:
            amount = grand_total if refund == "full" else max(Decimal("0.01"), q2(grand_total * Decimal("0.25")))
            refunds.append({"id": refund_id, "reason": rng.choice(_REFUND_REASONS), "total": "-" + money(amount)})
        order_key = "wc_order_" + _alnum(rng, 13)
        transaction_id = {
            "stripe": "ch_" + _alnum(rng, 24),
            "paypal": _alnum(rng, 17, "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"),
        }
        data: dict[str, Any] = {
            "id": order_id,
            "parent_id": 0,
            "number": str(order_id),
            "order_key": order_key,
            "created_via": "checkout",
            "version": "9.4.0",
            "status": status,
            "currency": self.currency,
            "date_created": None,
            "date_created_gmt": None,
            "date_modified": None,
            "date_modified_gmt": None,
            "discount_total": money(discount),
            "discount_tax": money(discount_tax),
            "shipping_total": money(shipping_total),
            "shipping_tax": money(shipping_tax),
            "cart_tax": money(cart_tax),
            "total": money(grand_total),
            "total_tax": money(total_tax),
            "prices_include_tax": False,
            "customer_id": customer_id,
            "customer_ip_address": f"192.0.2.{rng.randint(1, 254)}" if rng.random() < 0.8 else "",
            "customer_user_agent": rng.choice(_UAS),
            "customer_note": customer_note,
            "billing": billing_of(person, rng),
            "shipping": shipping_of(person),
            "payment_method": payment_method,
            "payment_method_title": PAYMENT_TITLES.get(payment_method, payment_method),
            "transaction_id": transaction_id.get(payment_method, "") if status not in ("pending", "failed") else "",
            "date_paid": None,
            "date_paid_gmt": None,
            "date_completed": None,
            "date_completed_gmt": None,
            "cart_hash": _alnum(rng, 32, "0123456789abcdef"),
            "meta_data": [
                {
                    "id": next(item_ids),
                    "key": "_wc_order_attribution_source_type",
                    "value": rng.choice(("organic", "typein", "utm", "referral")),
                }
            ],
            "line_items": lines,
            "tax_lines": tax_lines,
            "shipping_lines": shipping_lines,
            "fee_lines": [],
            "coupon_lines": coupon_lines,
            "refunds": refunds,
            "payment_url": "",
            "is_editable": False,
            "needs_payment": False,
            "needs_processing": bool(shipping_lines),
            "currency_symbol": CURRENCY_SYMBOLS.get(self.currency, self.currency),
        }
        record = OrderRecord(data, created_ts, modified_ts)
        set_date(data, "date_created", created_ts, self.tz)
        set_date(data, "date_modified", modified_ts, self.tz)
        paid = status in ("processing", "completed", "refunded")
        if payment_method == "cod":
            # COD is paid on delivery, i.e. when the order is completed.
            set_date(data, "date_paid", modified_ts if status in ("completed", "refunded") else None, self.tz)
        elif paid:
            set_date(data, "date_paid", min(created_ts + 45, modified_ts), self.tz)
        if status in ("completed", "refunded"):
            set_date(data, "date_completed", modified_ts, self.tz)
        refresh_flags(data)
        return record


def refresh_flags(data: dict[str, Any]) -> None:
    """The read-only booleans WooCommerce derives from status."""
    status = data["status"]
    data["is_editable"] = status in ("pending", "on-hold", "checkout-draft")
    data["needs_payment"] = status in ("pending", "failed") and Decimal(data["total"]) > 0


class PeopleBook:
    """Registered customers (ids from 2) and guest identities, each generated from its index."""

    def __init__(self, seed: int, registered: int, guests: int) -> None:
        self.seed = seed
        self.registered_count = registered
        self.guest_count = guests
        self.registered = functools.lru_cache(maxsize=65536)(self._registered)
        self.guest = functools.lru_cache(maxsize=65536)(self._guest)

    def _registered(self, idx: int) -> Person:
        rng = random.Random(h(self.seed, 11, idx))
        return make_person(rng, CUSTOMER_BASE_ID + idx, featured=idx if idx < 4 else None)

    def _guest(self, idx: int) -> Person:
        return make_person(random.Random(h(self.seed, 12, idx)), 100_000 + idx)


def _skew(value: int, n: int) -> int:
    """Map a hash to [0, n) favouring low indices, so some people order again and again."""
    u = (value & 0xFFFFFFFF) / 4294967296.0
    return min(n - 1, int(n * u * u))


_OLD = (
    ("completed", 780),
    ("cancelled", 70),
    ("refunded", 50),
    ("failed", 40),
    ("pending", 30),
    ("processing", 20),
    ("on-hold", 10),
)
_RECENT = (
    ("processing", 450),
    ("completed", 250),
    ("on-hold", 100),
    ("pending", 100),
    ("cancelled", 50),
    ("failed", 50),
)


def _pick(table: tuple[tuple[str, int], ...], value: int) -> str:
    for status, weight in table:
        if value < weight:
            return status
        value -= weight
    return table[0][0]


class History:
    """``n`` historical orders spread over [start_ts, end_ts), generated on demand from their index."""

    def __init__(
        self,
        *,
        seed: int,
        n: int,
        start_ts: int,
        end_ts: int,
        base_id: int,
        people: PeopleBook,
        builder: OrderBuilder,
    ) -> None:
        self.seed, self.n, self.base_id = seed, n, base_id
        self.start, self.end = start_ts, end_ts
        self.span = max(1, end_ts - start_ts)
        # Strictly below the gap to the next order, so modified stays monotonic in the index.
        self.max_delta = min(self.span // max(1, n), 3 * 86400)
        self.recent_from = end_ts - 14 * 86400
        self.people = people
        self.builder = builder

    def created_ts(self, i: int) -> int:
        return self.start + (i * self.span) // self.n

    def modified_ts(self, i: int) -> int:
        if self.max_delta <= 0:
            return self.created_ts(i)
        return self.created_ts(i) + h(self.seed, 5, i) % self.max_delta

    def payment_method(self, i: int) -> str:
        v = h(self.seed, 2, i) % 100
        return "cod" if v < 20 else "stripe" if v < 65 else "paypal" if v < 85 else "bacs"

    def status(self, i: int) -> str:
        table = _RECENT if self.created_ts(i) >= self.recent_from else _OLD
        status = _pick(table, h(self.seed, 1, i) % 1000)
        method = self.payment_method(i)
        if method == "cod" and status in ("failed", "pending"):
            return "processing" if status == "pending" else "cancelled"
        if method == "bacs" and status == "pending":
            return "on-hold"  # BACS checkouts wait on-hold for the transfer
        return status

    def customer_id(self, i: int) -> int:
        v = h(self.seed, 3, i)
        return CUSTOMER_BASE_ID + _skew(v >> 16, self.people.registered_count) if v % 100 < 55 else 0

    def person(self, i: int) -> Person:
        v = h(self.seed, 3, i)
        if v % 100 < 58:  # 55 % logged in, 3 % registered people checking out as guests
            return self.people.registered(_skew(v >> 16, self.people.registered_count))
        return self.people.guest(_skew(v >> 16, self.people.guest_count))

    def refund_kind(self, i: int, status: str) -> RefundKind:
        if status == "refunded":
            return "full"
        if status == "completed" and h(self.seed, 6, i) % 100 < 4:
            return "partial"
        return "none"

    def build(self, i: int) -> OrderRecord:
        rng = random.Random(h(self.seed, 4, i))
        status = self.status(i)
        return self.builder.build(
            order_id=self.base_id + i,
            rng=rng,
            person=self.person(i),
            customer_id=self.customer_id(i),
            status=status,
            payment_method=self.payment_method(i),
            created_ts=self.created_ts(i),
            modified_ts=self.modified_ts(i),
            items=self.builder.pick_items(rng),
            item_ids=iter(range(LAZY_ITEM_BASE + i * 10, LAZY_ITEM_BASE + i * 10 + 10)),
            coupon=rng.random() < 0.1,
            customer_note=rng.choice(_NOTES) if rng.random() < 0.12 else "",
            refund=self.refund_kind(i, status),
            refund_id=LAZY_REFUND_BASE + i,
        )
