from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema

from storeloop.config.auth import request_store
from storeloop.core.moments import Moment
from storeloop.core.pagination import paginate
from storeloop.orders.schemas import OrderDetailOut, OrderOut
from storeloop.orders.selectors import order_get_for_store, order_list

router = Router(tags=["orders"])


class OrderPage(Schema):
    count: int
    next_offset: int | None
    items: list[OrderOut]


@router.get("", response=OrderPage, summary="List mirrored orders, newest change first")
def list_orders(
    request: HttpRequest,
    external_id: int | None = None,
    status: str | None = None,
    modified_after: Moment | None = None,
    limit: int = 50,
    offset: int = 0,
) -> OrderPage:
    qs = order_list(store=request_store(request), external_id=external_id, status=status, modified_after=modified_after)
    items, count, next_offset = paginate(qs, limit=limit, offset=offset)
    return OrderPage(count=count, next_offset=next_offset, items=[OrderOut.from_order(o) for o in items])


@router.get("/{order_id}", response=OrderDetailOut, summary="One order with lines, refunds and addresses")
def get_order(request: HttpRequest, order_id: int) -> OrderDetailOut:
    return OrderDetailOut.from_order_detail(order_get_for_store(store=request_store(request), order_id=order_id))
