from __future__ import annotations

import datetime as dt

from ninja import Schema

from storeloop.core.money import money_str
from storeloop.orders.models import Order


class OrderContactOut(Schema):
    id: int
    email: str
    phone: str


class OrderLineOut(Schema):
    product_external_id: int
    name: str
    sku: str
    quantity: int
    total: str


class OrderRefundOut(Schema):
    external_id: int
    reason: str
    amount: str


class OrderOut(Schema):
    id: int
    external_id: int
    number: str
    status: str
    currency: str
    total: str
    total_tax: str
    shipping_total: str
    refunded_total: str
    payment_method: str
    payment_method_title: str
    is_cod: bool
    date_created: dt.datetime
    date_modified: dt.datetime
    date_paid: dt.datetime | None
    deleted: bool
    contact: OrderContactOut | None
    lines: list[OrderLineOut]

    @staticmethod
    def from_order(order: Order) -> OrderOut:
        contact = order.contact
        return OrderOut(
            id=order.pk,
            external_id=order.external_id,
            number=order.number,
            status=order.status,
            currency=order.currency,
            total=money_str(order.total),
            total_tax=money_str(order.total_tax),
            shipping_total=money_str(order.shipping_total),
            refunded_total=money_str(order.refunded_total),
            payment_method=order.payment_method,
            payment_method_title=order.payment_method_title,
            is_cod=order.is_cod,
            date_created=order.date_created,
            date_modified=order.date_modified,
            date_paid=order.date_paid,
            deleted=order.deleted_at is not None,
            contact=OrderContactOut(id=contact.pk, email=contact.email, phone=contact.phone) if contact else None,
            lines=[
                OrderLineOut(
                    product_external_id=line.product_external_id,
                    name=line.name,
                    sku=line.sku,
                    quantity=line.quantity,
                    total=money_str(line.total),
                )
                for line in order.lines.all()
            ],
        )


class OrderDetailOut(OrderOut):
    billing: dict[str, object]
    shipping: dict[str, object]
    meta_data: list[object]
    refunds: list[OrderRefundOut]

    @staticmethod
    def from_order_detail(order: Order) -> OrderDetailOut:
        base = OrderOut.from_order(order).dict()
        return OrderDetailOut(
            **base,
            billing=order.billing,
            shipping=order.shipping,
            meta_data=order.meta_data,
            refunds=[
                OrderRefundOut(external_id=r.external_id, reason=r.reason, amount=money_str(r.amount))
                for r in order.refunds.all()
            ],
        )


class Page(Schema):
    count: int
    next_offset: int | None
