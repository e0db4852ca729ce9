"""Mutations of the fake shop. Each bumps ``date_modified`` and fires WooCommerce's webhook topic."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any

from .catalogue import Sellable
from .core import (
    ShopCore,
    ShopError,
    customer_not_found,
    order_not_found,
    product_not_found,
    webhook_not_found,
)
from .customers import CustomerRecord
from .orders_gen import (
    ORDER_STATUSES,
    PAYMENT_TITLES,
    OrderRecord,
    refresh_flags,
)
from .people import Person, make_person
from .util import money, q2, set_date
from .webhooks import (
    WEBHOOK_STATUSES,
    WebhookState,
    valid_topic,
)


class ShopMutations(ShopCore):
    def create_webhook(
        self, *, topic: str, delivery_url: str, secret: str = "", name: str = "", status: str = "active"
    ) -> dict[str, Any]:
        """As ``POST /webhooks``: 201 body; an active webhook is pinged (asynchronously)."""
        topic = (topic or "").strip().lower()
        if not valid_topic(topic):
            raise ShopError(
                400,
                "woocommerce_rest_shop_webhook_invalid_topic",
                "Webhook topic is required and must be valid.",
            )
        if not (delivery_url or "").startswith(("http://", "https://")):
            raise ShopError(
                400,
                "woocommerce_rest_shop_webhook_invalid_delivery_url",
                "Webhook delivery URL must be a valid URL starting with http:// or https://.",
            )
        if status not in WEBHOOK_STATUSES:
            raise ShopError(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): status",
                {"status": "status is not one of active, paused, and disabled."},
            )
        with self._lock:
            now = self.now()
            webhook = WebhookState(
                id=next(self._webhook_ids),
                name=name or f"Webhook created on {datetime.fromtimestamp(now, self.tz):%b %d, %Y @ %I:%M %p}",
                status=status,
                topic=topic,
                delivery_url=delivery_url,
                secret=secret or secrets.token_hex(25),
                created_ts=now,
                modified_ts=now,
            )
            self._webhooks[webhook.id] = webhook
            if status == "active":
                self._dispatcher.enqueue_ping(webhook.id)
            return self.webhook_json(webhook)

    def update_webhook(self, webhook_id: int, **fields: Any) -> dict[str, Any]:
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            if webhook is None:
                raise webhook_not_found()
            status = fields.get("status")
            if status is not None and status not in WEBHOOK_STATUSES:
                raise ShopError(
                    400,
                    "rest_invalid_param",
                    "Invalid parameter(s): status",
                    {"status": "status is not one of active, paused, and disabled."},
                )
            topic = fields.get("topic")
            if topic is not None and not valid_topic(str(topic).lower()):
                raise ShopError(
                    400,
                    "woocommerce_rest_shop_webhook_invalid_topic",
                    "Webhook topic is required and must be valid.",
                )
            if "name" in fields:
                webhook.name = str(fields["name"])
            if topic is not None:
                webhook.topic = str(topic).lower()
            if "delivery_url" in fields:
                webhook.delivery_url = str(fields["delivery_url"])
            if fields.get("secret"):
                webhook.secret = str(fields["secret"])
            if status is not None:
                # Like WooCommerce, re-activating keeps failure_count: one more failure disables it
                # again, one success resets it.
                if status == "active" and webhook.status != "active" and webhook.pending_delivery:
                    self._dispatcher.enqueue_ping(webhook.id)
                webhook.status = status
            webhook.modified_ts = self.now()
            return self.webhook_json(webhook)

    def delete_webhook(self, webhook_id: int) -> dict[str, Any]:
        with self._lock:
            webhook = self._webhooks.pop(webhook_id, None)
            if webhook is None:
                raise webhook_not_found()
            return self.webhook_json(webhook)

    # --- order mutations ---------------------------------------------------------------------------

    def _sellable(self, spec: dict[str, Any]) -> Sellable:
        product_id = int(spec.get("product_id") or 0)
        variation_id = int(spec.get("variation_id") or 0)
        for s in self.sellables:
            if s.product_id == product_id and (variation_id in (0, s.variation_id)):
                return s
        raise ShopError(
            400,
            "woocommerce_rest_invalid_product_id",
            "Product ID provided is not associated with any product.",
        )

    def _person_for(self, customer_id: int) -> Person:
        record = self.customers.get(customer_id)
        if record is None:
            raise ShopError(400, "woocommerce_rest_invalid_customer_id", "Customer ID is invalid.")
        b = record.data["billing"]
        return Person(
            first_name=record.data["first_name"],
            last_name=record.data["last_name"],
            email=record.data["email"],
            country=b.get("country") or "DE",
            city=b.get("city", ""),
            state=b.get("state", ""),
            postcode=b.get("postcode", ""),
            address_1=b.get("address_1", ""),
            address_2=b.get("address_2", ""),
            company=b.get("company", ""),
            phones=(b.get("phone", ""),),
        )

    def create_order(self, **overrides: Any) -> dict[str, Any]:
        """A new checkout (random person, items and payment unless given); fires ``order.created``.

        Overrides: status, customer_id, billing, shipping, payment_method, payment_method_title,
        line_items ([{product_id, variation_id?, quantity}]), customer_note, meta_data, set_paid, coupon.
        """
        with self._lock:
            rng = self._rng
            if "customer_id" in overrides:
                customer_id = int(overrides["customer_id"] or 0)
                person = self._person_for(customer_id) if customer_id else make_person(rng, self._next_order_id)
            elif rng.random() < 0.55:
                customer_id = rng.choice(self.customers.ids()[:50] or [0])
                person = self._person_for(customer_id) if customer_id else make_person(rng, self._next_order_id)
            else:
                customer_id = 0
                person = self._people.guest(rng.randrange(self._people.guest_count))
            method = (
                overrides.get("payment_method")
                or rng.choices(("cod", "stripe", "paypal", "bacs"), weights=(20, 45, 20, 15))[0]
            )
            default_status = "on-hold" if method == "bacs" else "processing"
            status = overrides.get("status") or default_status
            if status not in ORDER_STATUSES or status == "trash":
                raise ShopError(
                    400,
                    "rest_invalid_param",
                    "Invalid parameter(s): status",
                    {"status": "status is not valid."},
                )
            if overrides.get("line_items"):
                items = [(self._sellable(li), max(1, int(li.get("quantity") or 1))) for li in overrides["line_items"]]
            else:
                items = self._builder.pick_items(rng)
            now = self.now()
            order_id = self._next_order_id
            self._next_order_id += 1
            record = self._builder.build(
                order_id=order_id,
                rng=rng,
                person=person,
                customer_id=customer_id,
                status=status,
                payment_method=method,
                created_ts=now,
                modified_ts=now,
                items=items,
                item_ids=self._item_ids,
                coupon=bool(overrides.get("coupon", False)),
                customer_note=str(overrides.get("customer_note", "")),
            )
            self._apply_fields(record, {k: v for k, v in overrides.items() if k in _EDITABLE and k != "status"})
            if overrides.get("set_paid"):
                self._mark_paid(record, now)
            self.orders.add(record)
            self.recent_order_ids.append(order_id)
            self._fire("order.created", order_id)
            return self.order_json(record)

    def _mark_paid(self, record: OrderRecord, now: int) -> None:
        if record.data["date_paid_gmt"] is None:
            set_date(record.data, "date_paid", now, self.tz)
        if record.status in ("pending", "on-hold", "failed"):
            record.data["status"] = "processing"

    def _apply_fields(self, record: OrderRecord, fields: dict[str, Any]) -> None:
        data = record.data
        for key, value in fields.items():
            if key in ("billing", "shipping"):
                if not isinstance(value, dict):
                    raise ShopError(
                        400,
                        "rest_invalid_param",
                        f"Invalid parameter(s): {key}",
                        {key: f"{key} is not of type object."},
                    )
                data[key] = {**data[key], **{k: str(v) for k, v in value.items() if k in data[key]}}
            elif key == "meta_data":
                if not isinstance(value, list):
                    raise ShopError(
                        400,
                        "rest_invalid_param",
                        "Invalid parameter(s): meta_data",
                        {"meta_data": "meta_data is not of type array."},
                    )
                for entry in value:
                    existing = next((m for m in data["meta_data"] if m["key"] == entry.get("key")), None)
                    if existing is not None:
                        existing["value"] = entry.get("value")
                    else:
                        data["meta_data"].append(
                            {"id": next(self._item_ids), "key": entry.get("key"), "value": entry.get("value")}
                        )
            elif key == "payment_method":
                data["payment_method"] = str(value)
                data["payment_method_title"] = PAYMENT_TITLES.get(str(value), str(value))
            elif key == "customer_id":
                data["customer_id"] = int(value or 0)
            elif key in ("customer_note", "payment_method_title", "transaction_id"):
                data[key] = str(value)
            elif key == "status":
                self._apply_status(record, str(value))
            elif key == "set_paid" and value:
                self._mark_paid(record, self.now())

    def _apply_status(self, record: OrderRecord, status: str) -> None:
        if status not in ORDER_STATUSES or status == "trash":
            raise ShopError(
                400, "rest_invalid_param", "Invalid parameter(s): status", {"status": "status is not valid."}
            )
        now = self.now()
        data = record.data
        old = data["status"]
        data["status"] = status
        paid_now = status == "completed" or (status == "processing" and data["payment_method"] != "cod")
        if paid_now and data["date_paid_gmt"] is None:
            set_date(data, "date_paid", now, self.tz)
        if status == "completed" and old != "completed":
            set_date(data, "date_completed", now, self.tz)
        if status == "refunded" and old != "refunded":
            # WooCommerce refunds the remainder when an order is set to refunded by hand.
            remaining = Decimal(data["total"]) - self._refunded(data)
            if remaining > 0:
                data["refunds"].insert(
                    0,
                    {
                        "id": next(self._refund_ids),
                        "reason": "Order fully refunded.",
                        "total": "-" + money(remaining),
                    },
                )

    @staticmethod
    def _refunded(data: dict[str, Any]) -> Decimal:
        return sum((-Decimal(r["total"]) for r in data["refunds"]), Decimal(0))

    def _touch(self, record: OrderRecord) -> None:
        record.modified_ts = self.now()
        set_date(record.data, "date_modified", record.modified_ts, self.tz)
        refresh_flags(record.data)

    def _changeable(self, order_id: int) -> OrderRecord:
        record = self.orders.materialise(order_id)
        if record is None:
            raise order_not_found()
        return record

    def update_order(self, order_id: int, **fields: Any) -> dict[str, Any]:
        """As ``PUT /orders/{id}``: partial update, bumps date_modified, fires ``order.updated``."""
        with self._lock:
            record = self._changeable(order_id)
            self._apply_fields(record, {k: v for k, v in fields.items() if k in _EDITABLE})
            self._touch(record)
            self._fire("order.updated", order_id)
            return self.order_json(record)

    def set_status(self, order_id: int, status: str) -> dict[str, Any]:
        return self.update_order(order_id, status=status)

    def refund_order(self, order_id: int, amount: Decimal | str, reason: str = "") -> dict[str, Any]:
        """Add a refund (shown as a negative total); a full refund sets status ``refunded``."""
        with self._lock:
            record = self._changeable(order_id)
            value = q2(Decimal(amount))
            remaining = Decimal(record.data["total"]) - self._refunded(record.data)
            if value <= 0 or value > remaining:
                raise ShopError(500, "woocommerce_rest_cannot_create_order_refund", "Invalid refund amount.")
            record.data["refunds"].insert(
                0, {"id": next(self._refund_ids), "reason": reason, "total": "-" + money(value)}
            )
            if value == remaining:
                record.data["status"] = "refunded"
            self._touch(record)
            self._fire("order.updated", order_id)
            return self.order_json(record)

    def delete_order(self, order_id: int, *, force: bool = False) -> dict[str, Any]:
        """Trash (fires ``order.deleted`` with ``{"id": N}``) or, with ``force``, delete for good.

        Like WooCommerce, a permanent delete fires no webhook: only trashing does.
        """
        with self._lock:
            record = self._changeable(order_id)
            if force:
                body = self.order_json(record)
                self.orders.remove(order_id)
                return body
            if record.status == "trash":
                raise ShopError(410, "woocommerce_rest_already_trashed", "The order has already been deleted.")
            record.prev_status = record.status
            record.data["status"] = "trash"
            self._touch(record)
            self._fire("order.deleted", order_id)
            return self.order_json(record)

    def restore_order(self, order_id: int) -> dict[str, Any]:
        """Untrash to the previous status; fires ``order.restored``."""
        with self._lock:
            record = self._changeable(order_id)
            if record.status != "trash":
                raise ShopError(400, "woocommerce_rest_not_trashed", "The order is not in the trash.")
            record.data["status"] = record.prev_status or "pending"
            record.prev_status = None
            self._touch(record)
            self._fire("order.restored", order_id)
            return self.order_json(record)

    # --- customers and products --------------------------------------------------------------------

    def create_customer(self, *, email: str, **fields: Any) -> dict[str, Any]:
        """Register a customer (unique email); fires ``customer.created``."""
        with self._lock:
            if not email or "@" not in email:
                raise ShopError(400, "registration-error-invalid-email", "Please provide a valid email address.")
            if self.customers.find_email(email) is not None:
                raise ShopError(
                    400,
                    "registration-error-email-exists",
                    "An account is already registered with your email address.",
                )
            customer_id = self.customers.next_id
            self.customers.next_id += 1
            now = self.now()
            person = make_person(self._rng, customer_id)
            record = self.customers.build(person, customer_id, now, now)
            record.data["email"] = email.strip()
            record.data["billing"]["email"] = email.strip()
            record.data["username"] = fields.pop("username", None) or email.split("@")[0].lower()
            self._apply_customer_fields(record, fields)
            self.customers.add(record)
            self._fire("customer.created", customer_id)
            return self.customer_json(record)

    def _apply_customer_fields(self, record: CustomerRecord, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if key in ("billing", "shipping") and isinstance(value, dict):
                record.data[key] = {
                    **record.data[key],
                    **{k: str(v) for k, v in value.items() if k in record.data[key]},
                }
            elif key in ("first_name", "last_name", "email"):
                record.data[key] = str(value)
            elif key == "meta_data" and isinstance(value, list):
                record.data["meta_data"].extend(value)

    def update_customer(self, customer_id: int, **fields: Any) -> dict[str, Any]:
        with self._lock:
            record = self.customers.materialise(customer_id)
            if record is None:
                raise customer_not_found()
            self._apply_customer_fields(record, fields)
            record.modified_ts = self.now()
            set_date(record.data, "date_modified", record.modified_ts, self.tz)
            self._fire("customer.updated", customer_id)
            return self.customer_json(record)

    def update_product(self, product_id: int, **fields: Any) -> dict[str, Any]:
        with self._lock:
            product = self.products.get(product_id)
            if product is None:
                raise product_not_found()
            for key in ("name", "sku", "status", "regular_price", "sale_price", "description"):
                if key in fields:
                    product.data[key] = str(fields[key])
            if "regular_price" in fields or "sale_price" in fields:
                product.data["price"] = product.data["sale_price"] or product.data["regular_price"]
            product.modified_ts = self.now()
            set_date(product.data, "date_modified", product.modified_ts, self.tz)
            self._fire("product.updated", product_id)
            return self.product_json(product)


_EDITABLE = frozenset(
    {
        "status",
        "customer_id",
        "billing",
        "shipping",
        "payment_method",
        "payment_method_title",
        "customer_note",
        "meta_data",
        "transaction_id",
        "set_paid",
    }
)
