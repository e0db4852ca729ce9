"""The incremental path: one order event, bounded work.

The invariant: every aggregate equals a GROUP BY over the contribution rows (see ``sql``). An
update recomputes one order's contributions from the mirror with the full recompute's own SQL,
and moves the aggregates by exactly (new − old):

* daily orders/gross/refunds and product orders/units/revenue/refunds are sums over
  contributions, so the order's own difference is the aggregate's difference;
* daily new/returning customers and product buyers/repeat buyers are sums over contacts of a
  function of that contact's contributions, so only the contacts of the old and new rows
  change, and their difference is taken from their contributions before and after;
* ``ContactMetrics`` of those contacts is rebuilt from their contributions (a contact has few
  orders).

Nothing depends on how many times or in which order events arrived: an update reads only the
current mirror and the stored contributions, and an unchanged order writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from storeloop.metrics import sql
from storeloop.metrics.db import as_date, as_datetime, db_date, db_datetime, lock_contacts, lock_store
from storeloop.orders.models import Order


class OcRow(NamedTuple):
    order_id: int
    store_id: int
    contact_id: int | None
    currency: str
    created: Any
    day: Any
    gross_e4: int
    refunds_e4: int


class OlcRow(NamedTuple):
    line_id: int
    order_id: int
    store_id: int
    contact_id: int | None
    product_external_id: int
    currency: str
    units: int
    revenue_e4: int
    refunds_e4: int


def _oc_rows(cursor: CursorWrapper, query: str, params: Sequence[Any]) -> list[OcRow]:
    cursor.execute(query, params)
    return [
        OcRow(int(o), int(s), None if c is None else int(c), cur, as_datetime(t), as_date(d), int(g), int(r))
        for o, s, c, cur, t, d, g, r in cursor.fetchall()
    ]


def _olc_rows(cursor: CursorWrapper, query: str, params: Sequence[Any]) -> list[OlcRow]:
    cursor.execute(query, params)
    return sorted(
        OlcRow(int(i), int(o), int(s), None if c is None else int(c), int(p), cur, int(u), int(v), int(r))
        for i, o, s, c, p, cur, u, v, r in cursor.fetchall()
    )


@dataclass
class _Deltas:
    """Pending increments of daily and product rows, keyed like their unique constraints."""

    daily: defaultdict[tuple[Any, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0] * 5))
    products: defaultdict[tuple[int, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0] * 6))

    def order(self, oc: Iterable[OcRow], olc: Iterable[OlcRow], sign: int) -> None:
        for row in oc:
            vec = self.daily[(row.day, row.currency)]
            vec[0] += sign
            vec[1] += sign * row.gross_e4
            vec[2] += sign * row.refunds_e4
        products: set[tuple[int, str]] = set()
        for line in olc:
            key = (line.product_external_id, line.currency)
            vec = self.products[key]
            if key not in products:  # an order counts once per product, whatever its lines
                products.add(key)
                vec[0] += sign
            vec[1] += sign * line.units
            vec[2] += sign * line.revenue_e4
            vec[3] += sign * line.refunds_e4

    def contact(self, before: _ContactState, after: _ContactState) -> None:
        old_days, new_days = before.day_flags(), after.day_flags()
        for key in old_days.keys() | new_days.keys():
            old_new, old_returning = old_days.get(key, (0, 0))
            new_new, new_returning = new_days.get(key, (0, 0))
            vec = self.daily[key]
            vec[3] += new_new - old_new
            vec[4] += new_returning - old_returning
        for key in before.products.keys() | after.products.keys():
            old, new = before.products.get(key, 0), after.products.get(key, 0)
            vec = self.products[key]
            vec[4] += (new > 0) - (old > 0)
            vec[5] += (new >= 2) - (old >= 2)

    def apply(self, cursor: CursorWrapper, store_id: int) -> None:
        daily = [(k, v) for k, v in self.daily.items() if any(v)]
        if daily:
            cursor.executemany(sql.DAILY_ADD, [(store_id, db_date(d), c, *v) for (d, c), v in daily])
            cursor.executemany(sql.DAILY_DROP_EMPTY, [(store_id, db_date(d), c) for (d, c), _ in daily])
        products = [(k, v) for k, v in self.products.items() if any(v)]
        if products:
            cursor.executemany(sql.PRODUCT_ADD, [(store_id, p, c, *v) for (p, c), v in products])
            cursor.executemany(sql.PRODUCT_DROP_EMPTY, [(store_id, p, c) for (p, c), _ in products])


@dataclass(frozen=True)
class _ContactState:
    days: frozenset[tuple[str, Any]]  # (currency, day) with a counted order
    products: dict[tuple[int, str], int]  # (product, currency) -> orders of it

    @classmethod
    def read(cls, cursor: CursorWrapper, store_id: int, contact_id: int) -> _ContactState:
        cursor.execute(sql.CONTACT_DAYS, [store_id, contact_id])
        days = frozenset((cur, as_date(day)) for cur, day in cursor.fetchall())
        cursor.execute(sql.CONTACT_PRODUCTS, [store_id, contact_id])
        products = {(int(p), cur): int(n) for p, cur, n in cursor.fetchall()}
        return cls(days, products)

    def day_flags(self) -> dict[tuple[Any, str], tuple[int, int]]:
        """(day, currency) -> (new, returning): new on the first day in each currency."""
        first: dict[str, Any] = {}
        for cur, day in self.days:
            if cur not in first or day < first[cur]:
                first[cur] = day
        return {(day, cur): (1, 0) if day == first[cur] else (0, 1) for cur, day in self.days}


def rebuild_contact_metrics(cursor: CursorWrapper, store_id: int, contact_id: int) -> None:
    cursor.execute(sql.CM_DELETE_CONTACT, [store_id, contact_id])
    cursor.execute(sql.contact_metrics_insert(sql.CONTACT_SCOPE), [store_id, contact_id])


def _oc_params(row: OcRow) -> tuple[Any, ...]:
    return (*row[:4], db_datetime(row.created), db_date(row.day), row.gross_e4, row.refunds_e4)


def update_order(order_id: int) -> None:
    """Bring every metric in line with the mirrored state of one order (see module docstring)."""
    with transaction.atomic(savepoint=False):
        current = Order.objects.select_for_update().filter(pk=order_id).values_list("store_id").first()
        if current is None:
            return  # never mirrored: nothing was counted
        store_id = current[0]
        lock_store(store_id, exclusive=False)
        with connection.cursor() as cursor:
            old_oc = _oc_rows(cursor, sql.OC_OF_ORDER, [order_id])
            new_oc = _oc_rows(cursor, sql.order_contribution_select(connection, "o.id = %s"), [order_id])
            old_olc = _olc_rows(cursor, sql.OLC_OF_ORDER, [order_id])
            new_olc = _olc_rows(
                cursor, sql.line_contribution_select(sql.one_order_contribution(connection), "1 = 1"), [order_id]
            )
            if old_oc == new_oc and old_olc == new_olc:
                return  # a duplicate, or a change no figure depends on
            rows: list[OcRow | OlcRow] = [*old_oc, *new_oc, *old_olc, *new_olc]
            contacts = sorted({r.contact_id for r in rows if r.contact_id is not None})
            lock_contacts(contacts)
            before = {c: _ContactState.read(cursor, store_id, c) for c in contacts}
            deltas = _Deltas()
            deltas.order(old_oc, old_olc, -1)
            deltas.order(new_oc, new_olc, +1)
            if old_oc != new_oc:
                cursor.execute(sql.OC_DELETE_ORDER, [order_id])
                if new_oc:
                    cursor.executemany(sql.OC_INSERT_VALUES, [_oc_params(r) for r in new_oc])
            if old_olc != new_olc:
                cursor.execute(sql.OLC_DELETE_ORDER, [order_id])
                if new_olc:
                    cursor.executemany(sql.OLC_INSERT_VALUES, new_olc)
            for contact_id in contacts:
                deltas.contact(before[contact_id], _ContactState.read(cursor, store_id, contact_id))
                rebuild_contact_metrics(cursor, store_id, contact_id)
            deltas.apply(cursor, store_id)


def update_contact(store_id: int, contact_id: int) -> None:
    """Re-run ``update_order`` for every order the contact has now or was last counted with.

    For changes that move orders without an order event: a merge (orders move to the survivor)
    or a deleted contact (its orders lose their contact).
    """
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            cursor.execute(sql.ORDERS_OF_CONTACT, [contact_id, store_id, contact_id])
            order_ids = sorted(int(row[0]) for row in cursor.fetchall())
        for order_id in order_ids:
            update_order(order_id)
        lock_store(store_id, exclusive=False)
        lock_contacts([contact_id])
        with connection.cursor() as cursor:
            rebuild_contact_metrics(cursor, store_id, contact_id)
