"""The full, set-based recompute of one store, and the periodic refresh of its RFM thresholds.

Each step is INSERT … SELECT over the store in SQL (the statements the incremental path runs
over one order or contact), in transactions that keep SQLite's single write lock for seconds,
not minutes (well inside the 20 s busy timeout other writers wait):

1. contributions: orders in ranges of ``BATCH_ORDERS`` ids, one transaction each (the first
   also clears the store's old rows);
2. ``ContactMetrics``; 3. ``DailyMetrics`` (its new customers come from 2); 4. ``ProductMetrics``
   — one transaction each.

Interleaved incremental updates stay correct: each aggregate is a function of the contributions
at the moment its own transaction reads them, and an increment lands either before that (and is
overwritten by a recount that includes it) or after (and applies to the recount). On PostgreSQL
the store's advisory lock keeps increments out of a rebuild's DELETE … INSERT window.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from storeloop.metrics import sql
from storeloop.metrics.db import bulk_page_cache, lock_store
from storeloop.metrics.definitions import MIN_RFM_CONTACTS, quintile_cuts
from storeloop.metrics.models import ContactMetrics, DailyMetrics, ProductMetrics, RfmThresholds

# Orders per contributions transaction. Each commit writes out every index page the batch touched
# (its index is in contact order, so most of them): fewer, larger batches are faster overall. A
# batch of 1,000,000 holds SQLite's write lock for about 6 s on a small 2-core machine, well
# inside the busy timeout other writers wait (STORELOOP_SQLITE_BUSY_TIMEOUT, 20 s).
BATCH_ORDERS = 1_000_000


@dataclass(frozen=True)
class RecalcResult:
    store_id: int
    counted_orders: int
    contacts: int
    days: int
    products: int
    seconds: float
    phase_seconds: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return {
            "store_id": self.store_id,
            "counted_orders": self.counted_orders,
            "contacts": self.contacts,
            "days": self.days,
            "products": self.products,
            "seconds": round(self.seconds, 3),
            "phase_seconds": {k: round(v, 3) for k, v in self.phase_seconds.items()},
        }


def _order_ranges(store_id: int) -> list[tuple[int, int]]:
    """Contiguous id ranges covering every order of the store (and any id beyond the last)."""
    bounds: list[int] = []
    last = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(sql.NEXT_ORDER_BOUND, [store_id, last, BATCH_ORDERS - 1])
            row = cursor.fetchone()
            if row is None:
                break
            last = int(row[0])
            bounds.append(last)
    ranges, low = [], 0
    for high in bounds:
        ranges.append((low, high))
        low = high + 1
    ranges.append((low, 2**62))
    return ranges


def clear_store(cursor: CursorWrapper, table: str, store_id: int) -> None:
    """Delete the store's rows of ``table``.

    On SQLite, when no other store has rows there (one shop per installation is common), as a
    DELETE without WHERE, which SQLite runs as a truncate: it frees the pages instead of visiting
    every row and index entry, many times faster for a million rows.
    """
    if connection.vendor == "sqlite":
        cursor.execute(sql.other_store_rows(table), [store_id])
        if cursor.fetchone() is None:
            cursor.execute(sql.delete_all(table))
            return
    cursor.execute(sql.delete_store(table), [store_id])


def rebuild_contributions(store_id: int) -> None:
    """Order contributions from the mirror, then line contributions from those and the lines.

    The first transaction clears the store's contributions; each one then (re)builds a range of
    orders (a range may hold rows an update wrote in between: deleted and rebuilt).
    """
    order_scope = "o.store_id = %s AND o.id BETWEEN %s AND %s"
    line_scope = "oc.store_id = %s AND oc.order_id BETWEEN %s AND %s"
    for n, (low, high) in enumerate(_order_ranges(store_id)):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            lock_store(store_id, exclusive=True)
            params = [store_id, low, high]
            for table, columns, select in (
                (sql.OC, sql.OC_COLUMNS, sql.order_contribution_select(connection, order_scope)),
                (
                    sql.OLC,
                    sql.OLC_COLUMNS,
                    sql.line_contribution_select(sql.contribution_table(connection), line_scope),
                ),
            ):
                if n == 0:
                    clear_store(cursor, table, store_id)
                else:
                    cursor.execute(sql.delete_order_range(table), params)
                cursor.execute(sql.insert_select(table, columns, select), params)


def rebuild_contact_metrics(store_id: int) -> None:
    """Every contact's figures and scores, from the contributions (no sort: see ``sql``)."""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        lock_store(store_id, exclusive=True)
        clear_store(cursor, sql.CM, store_id)
        cursor.execute(sql.contact_metrics_insert("oc.store_id = %s"), [store_id])


def rebuild_aggregates(store_id: int) -> None:
    """Daily and product figures, one transaction each (after the contact figures: new customers)."""
    for table, insert, params in (
        (sql.DAILY, sql.daily_insert(connection), [store_id, store_id]),
        (sql.PRODUCTS, sql.product_insert(connection), [store_id, store_id]),
    ):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            lock_store(store_id, exclusive=True)
            clear_store(cursor, table, store_id)
            cursor.execute(insert, params)


def recalculate_store(store_id: int) -> RecalcResult:
    """See ``OrderMetricsUpdater.recalculate_customer_metrics``."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    with bulk_page_cache():
        for name, step in (
            ("contributions", rebuild_contributions),
            ("contacts", rebuild_contact_metrics),
            ("daily_and_products", rebuild_aggregates),
        ):
            t0 = time.perf_counter()
            step(store_id)
            phases[name] = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute(sql.COUNTED_ORDERS, [store_id])
        counted = int(cursor.fetchone()[0])
    return RecalcResult(
        store_id=store_id,
        counted_orders=counted,
        contacts=ContactMetrics.objects.filter(store_id=store_id).count(),
        days=DailyMetrics.objects.filter(store_id=store_id).count(),
        products=ProductMetrics.objects.filter(store_id=store_id).count(),
        seconds=time.perf_counter() - started,
        phase_seconds=phases,
    )


def refresh_rfm_thresholds(store_id: int, as_of: dt.datetime | None = None) -> dict[str, int]:
    """Retake the quintiles of every currency and rescore the store's contacts against them.

    Returns the number of contacts each currency's quintiles were taken over.
    """
    as_of = as_of or timezone.now()
    taken: dict[str, int] = {}
    with bulk_page_cache(), transaction.atomic(durable=True):
        lock_store(store_id, exclusive=True)
        rows = ContactMetrics.objects.filter(store_id=store_id).values_list(
            "currency", "last_order_at", "order_count", "net_e4"
        )
        by_currency: dict[str, list[tuple[dt.datetime, int, int]]] = {}
        for currency, last, count, net in rows:
            by_currency.setdefault(currency, []).append((last, count, net))
        RfmThresholds.objects.filter(store_id=store_id).exclude(
            currency__in=[c for c, v in by_currency.items() if len(v) >= MIN_RFM_CONTACTS]
        ).delete()
        for currency, values in by_currency.items():
            if len(values) < MIN_RFM_CONTACTS:
                continue
            r = quintile_cuts(sorted(v[0] for v in values))
            f = quintile_cuts(sorted(v[1] for v in values))
            m = quintile_cuts(sorted(v[2] for v in values))
            RfmThresholds.objects.update_or_create(
                store_id=store_id,
                currency=currency,
                defaults={
                    "as_of": as_of,
                    "contacts": len(values),
                    **{f"r_cut{i + 1}": r[i] for i in range(4)},
                    **{f"f_cut{i + 1}": f[i] for i in range(4)},
                    **{f"m_cut{i + 1}": m[i] for i in range(4)},
                },
            )
            taken[currency] = len(values)
        with connection.cursor() as cursor:
            clear_store(cursor, sql.CM, store_id)
            cursor.execute(sql.contact_metrics_insert("oc.store_id = %s"), [store_id])
    return taken
