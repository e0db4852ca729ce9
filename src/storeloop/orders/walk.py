"""Walking the shop's orders by modification time (keyset), shared by reconciliation and backfill.

Page numbers shift while the shop takes orders (an order modified mid-walk moves to the end and
pushes another one into a page already read), so the cursor is the time itself:
``orderby=modified&order=asc&modified_after=<cursor − 1 s>``, always page 1. WooCommerce keeps times
to the second and ``modified_after``/``modified_before`` are exclusive, hence the one-second
overlap; re-applying an order is a no-op for the versioned mirror.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

from storeloop.integrations.woocommerce.client import Page, WooCommerceClient, WooCommercePort
from storeloop.integrations.woocommerce.models import WooOrder
from storeloop.orders.prepare import PreparedOrder, prepare_raw

T = TypeVar("T")

PAGE_SIZE = 100
OVERLAP = dt.timedelta(seconds=1)


def fetch_step(
    client: WooCommercePort, cursor: dt.datetime | None, until: dt.datetime | None = None
) -> tuple[list[WooOrder], dt.datetime | None, bool]:
    """One keyset step: orders modified after ``cursor`` (and up to ``until``).

    Returns the orders, the next cursor and whether the range is exhausted. Consumers checkpoint
    the returned cursor after committing the orders, so an interrupted walk resumes exactly there.
    """
    return _step(client.list_orders_page, _snapshot_modified, cursor, until)


def fetch_step_prepared(
    client: WooCommerceClient, cursor: dt.datetime | None, until: dt.datetime | None = None
) -> tuple[list[PreparedOrder], dt.datetime | None, bool]:
    """``fetch_step`` with the orders turned straight into database rows (``orders.prepare``)."""
    return _step(partial(client.list_orders_page_as, prepare_raw), _prepared_modified, cursor, until)


def _step(
    list_page: Callable[..., Page[T]],
    modified: Callable[[T], dt.datetime],
    cursor: dt.datetime | None,
    until: dt.datetime | None,
) -> tuple[list[T], dt.datetime | None, bool]:
    after = cursor - OVERLAP if cursor else None
    before = until + OVERLAP if until else None
    page = list_page(1, PAGE_SIZE, modified_after=after, modified_before=before, orderby="modified", order="asc")
    items = list(page.items)
    if not items:
        return [], cursor, True
    first, last = modified(items[0]), modified(items[-1])
    if len(items) == PAGE_SIZE and first == last:
        # A full page inside one second: take that whole second by page number, then move on.
        whole = [order for chunk in _walk_second(list_page, first) for order in chunk]
        return whole, first + dt.timedelta(seconds=1), False
    return items, last, len(items) < PAGE_SIZE


def _snapshot_modified(order: WooOrder) -> dt.datetime:
    return order.date_modified_gmt


def _prepared_modified(order: PreparedOrder) -> dt.datetime:
    return dt.datetime.fromisoformat(order.date_modified).replace(tzinfo=dt.UTC)  # the UTC db text


def walk_modified(
    client: WooCommercePort, since: dt.datetime | None, until: dt.datetime | None = None
) -> Iterator[list[WooOrder]]:
    """Yield pages of orders with ``since < date_modified_gmt <= until`` in modification order."""
    cursor = since
    while True:
        items, cursor, finished = fetch_step(client, cursor, until)
        if items:
            yield items
        if finished:
            return


def _walk_second(list_page: Callable[..., Page[T]], second: dt.datetime) -> Iterator[list[T]]:
    page_no = 1
    while True:
        page = list_page(
            page_no,
            PAGE_SIZE,
            modified_after=second - OVERLAP,
            modified_before=second + dt.timedelta(seconds=1),
            orderby="id",
            order="asc",
        )
        if page.items:
            yield list(page.items)
        if not page.has_next:
            return
        page_no += 1
