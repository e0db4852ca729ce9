"""The lazy history: a million orders served page by page without materialising them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from storeloop.integrations.woocommerce.client import WooCommerceClient
from storeloop.integrations.woocommerce.fake import FakeWooShop

N = 1_000_000
FIRST, LAST = 1000, 1000 + N - 1


@pytest.fixture(scope="module")
def big_shop() -> Iterator[FakeWooShop]:
    with FakeWooShop(initial_orders=N, seed=3) as started:
        yield started


@pytest.fixture
def big_client(big_shop: FakeWooShop) -> Iterator[WooCommerceClient]:
    with WooCommerceClient(big_shop.url, "ck_test", "cs_test") as c:
        yield c


def test_first_and_last_pages(big_client: WooCommerceClient) -> None:
    first = big_client.list_orders_page(1, 100, orderby="modified", order="asc")
    assert (first.total, first.total_pages, first.has_next) == (N, 10_000, True)
    assert [o.id for o in first.items] == list(range(FIRST, FIRST + 100))
    last = big_client.list_orders_page(10_000, 100, orderby="modified", order="asc")
    assert [o.id for o in last.items] == list(range(LAST - 99, LAST + 1))
    assert last.has_next is False
    newest = big_client.list_orders_page(1, 3, orderby="date", order="desc")
    assert [o.id for o in newest.items] == [LAST, LAST - 1, LAST - 2]


def test_modified_window_in_the_middle(big_client: WooCommerceClient) -> None:
    lower = big_client.get_order(FIRST + 600_000).date_modified_gmt
    upper = big_client.get_order(FIRST + 600_250).date_modified_gmt
    window = big_client.list_orders_page(1, 100, modified_after=lower, modified_before=upper)
    assert window.total == 249
    assert [o.id for o in window.items] == list(range(FIRST + 600_001, FIRST + 600_101))
    assert all(lower < o.date_modified_gmt < upper for o in window.items)
    third = big_client.list_orders_page(3, 100, modified_after=lower, modified_before=upper)
    assert [o.id for o in third.items] == list(range(FIRST + 600_201, FIRST + 600_250))
    wide = big_client.list_orders_page(1, 1, modified_after=lower - timedelta(days=3650))
    assert wide.total == N


def test_changed_history_orders_move_and_deleted_ones_vanish(
    big_shop: FakeWooShop, big_client: WooCommerceClient
) -> None:
    newest_before = big_client.get_order(LAST).date_modified_gmt
    big_shop.set_status(FIRST + 10, "completed")
    big_shop.delete_order(FIRST + 20, force=True)
    try:
        first = big_client.list_orders_page(1, 100, orderby="modified", order="asc")
        assert first.total == N - 1
        ids = [o.id for o in first.items]
        assert FIRST + 10 not in ids
        assert FIRST + 20 not in ids
        assert ids == [i for i in range(FIRST, FIRST + 102) if i not in (FIRST + 10, FIRST + 20)]
        tail = big_client.list_orders_page(1, 100, modified_after=newest_before)
        assert [(o.id, o.status) for o in tail.items] == [(FIRST + 10, "completed")]
        by_id = big_client.list_orders_page(1, 12, orderby="id", order="asc")
        assert [o.id for o in by_id.items] == [i for i in range(FIRST, FIRST + 13) if i != FIRST + 20][:12]
    finally:
        big_shop.orders.records.clear()  # module-scoped shop: undo for the other tests
        big_shop.orders.deleted.clear()
        big_shop.orders.dirty.clear()


def test_single_orders_are_deterministic(big_shop: FakeWooShop) -> None:
    again = FakeWooShop(initial_orders=N, seed=3, clock=big_shop._clock)
    other_seed = FakeWooShop(initial_orders=N, seed=4)
    a, b = big_shop.orders.get(FIRST + 777_777), again.orders.get(FIRST + 777_777)
    assert a is not None
    assert b is not None
    assert a.data == b.data
    c = other_seed.orders.get(FIRST + 777_777)
    assert c is not None
    assert c.data["order_key"] != a.data["order_key"]
