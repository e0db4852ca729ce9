"""Metrics: the full recompute of a large store and the incremental update per order event (SQLite).

1. a fresh data dir and SQLite file, ``migrate``, one store; ``--contacts`` contacts and
   ``--orders`` orders (1.55 lines each on average; statuses, refunds, guests, deletions and a
   second currency mixed in) bulk-inserted with executemany — not measured;
2. baseline: one plain ``SELECT contact_id, COUNT(*), SUM(total) … GROUP BY contact_id`` over the
   store's orders;
3. ``OrderMetricsUpdater.recalculate_customer_metrics`` on empty metric tables (what a backfill
   does); its ratio to the baseline;
4. ``refresh_store_models`` (RFM quintiles and the CLV fit): reported, not a target;
5. ``--events`` order events, each a mirror-equivalent write (status, total, refund, lines,
   contact, deletion or restore) in a transaction followed by ``update_order_metrics``; only that
   call is timed. The same-run baseline is the median of the write itself;
6. unless ``--no-verify``: the metric tables are copied, recomputed over the existing rows
   (timed too), and compared with the copies row for row (EXCEPT both ways).

Targets (SQLite): full recompute of 1,000,000 orders / 100,000 contacts <= 15 s, median
incremental update <= 5 ms. The last line of output is JSON with the figures.

    .venv/bin/python bench/metrics.py --quick
    .venv/bin/python bench/metrics.py            # 1,000,000 orders, 100,000 contacts
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import machine_busy_fraction, machine_info, percentile, print_json_line, temp_data_dir

ROOT = Path(__file__).resolve().parents[1]
START = dt.datetime(2023, 1, 1)  # naive UTC, as Django stores it on SQLite
SPAN_SECONDS = 3 * 365 * 86400
STATUSES = (
    ["completed"] * 80 + ["processing"] * 8 + ["on-hold"] * 3 + ["refunded"] * 3 + ["cancelled"] * 4
    + ["pending", "failed"]
)  # fmt: skip
EVENT_STATUSES = ["completed", "processing", "on-hold", "refunded", "cancelled", "pending"]
CHUNK = 50_000


def setup_django(data_dir: Path) -> None:
    os.environ.update(
        STORELOOP_DATA_DIR=str(data_dir),
        STORELOOP_DATABASE_URL=f"sqlite:///{data_dir / 'bench.sqlite3'}",
        STORELOOP_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="storeloop.config.settings",
    )
    sys.path.insert(0, str(ROOT / "src"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def text(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def defaults(model: Any, *generated: str) -> dict[str, Any]:
    """Database values of every column but the ``generated`` ones (so new columns keep working)."""
    from django.db import connection

    out: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.column in generated:
            continue
        if field.has_default():
            out[field.column] = field.get_db_prep_save(field.get_default(), connection)
        elif field.null:
            out[field.column] = None
    return out


def insert_rows(table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    from django.db import connection, transaction

    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    done, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(sql, batch)
            done, batch = done + len(batch), []
    if batch:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, batch)
        done += len(batch)
    return done


def purchase_timeline(orders: int, contacts: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """(second, contact) of every order, in time order: customers who behave as BG/NBD assumes
    (a purchase rate and a drop-out chance of their own), topped up or thinned at random to
    exactly ``orders`` orders, so the CLV fit has real heterogeneity to find."""
    week = 7 * 86400
    horizon = SPAN_SECONDS / week
    firsts = [rng.uniform(0, horizon) for _ in range(contacts)]
    repeats: list[tuple[float, int]] = []
    for contact, t in enumerate(firsts):
        rate = rng.gammavariate(1.2, 1 / 4.8)  # purchases per week while active, mean 0.25
        drop = rng.betavariate(1.0, 8.0)  # chance to stop after each purchase, mean 0.11
        while True:
            t += rng.expovariate(rate)
            if t >= horizon:
                break
            repeats.append((t, contact))
            if rng.random() < drop:
                break
    rng.shuffle(repeats)
    del repeats[max(0, orders - contacts) :]
    while len(repeats) < orders - contacts:
        contact = rng.randrange(contacts)
        repeats.append((rng.uniform(firsts[contact], horizon), contact))
    timeline = sorted([(t, c) for c, t in enumerate(firsts)][:orders] + repeats)
    return [int(t * week) for t, _ in timeline], [c for _, c in timeline]


def build_store(orders: int, contacts: int, rng: random.Random) -> tuple[int, int, int, int]:
    """Insert the store; returns (store id, first order id, first contact id, lines)."""
    from django.db import connection

    from storeloop.contacts.models import Contact
    from storeloop.orders.models import Order, OrderLine
    from storeloop.stores.models import Store

    store = Store.objects.create(name="Bench shop", url="https://bench.example", consumer_key="ck",
                                 consumer_secret="cs", webhook_secret="whsec", manage_webhooks=False)  # fmt: skip
    now = text(START + dt.timedelta(seconds=SPAN_SECONDS))
    base = defaults(Contact, "email")
    base.update(store_id=store.pk, created_at=now, updated_at=now, country="DE")
    columns = [*base, "email"]
    insert_rows(Contact._meta.db_table, columns, ((*base.values(), f"c{i}@bench.example") for i in range(contacts)))
    with connection.cursor() as cursor:
        cursor.execute("SELECT MIN(id) FROM contacts_contact WHERE store_id = %s", [store.pk])
        first_contact = int(cursor.fetchone()[0])

    seconds, owners = purchase_timeline(orders, contacts, rng)
    # Spend per order varies around a mean of each customer's own (Gamma-Gamma's assumption).
    mean_spend = [rng.gammavariate(4.0, 15.0) for _ in range(contacts)]
    generated = ["external_id", "number", "contact_id", "status", "currency", "total", "refunded_total",
                 "date_created", "date_modified", "deleted_at"]  # fmt: skip
    order_base = defaults(Order, *generated)
    order_base.update(store_id=store.pk, payment_method="cod", is_cod=True, created_at=now, updated_at=now)
    order_columns = [*order_base, *generated]
    line_plan: list[tuple[int, float]] = []  # (lines, total) per order, for the line pass

    def order_rows() -> Iterator[tuple[Any, ...]]:
        for n in range(orders):
            owner = owners[n]
            guest = rng.random() < 0.02
            created = text(START + dt.timedelta(seconds=seconds[n]))
            status = rng.choice(STATUSES)
            total = max(1.0, round(rng.gammavariate(6.0, mean_spend[owner] / 6.0), 2))
            refunded = total if status == "refunded" else 0.0
            if status == "completed" and rng.random() < 0.04:
                refunded = round(total * rng.uniform(0.1, 0.5), 2)
            deleted = created if rng.random() < 0.003 else None
            r = rng.random()
            line_plan.append((1 + (r < 0.4) + (r < 0.15), total))
            yield (*order_base.values(), n + 1, str(n + 1), None if guest else first_contact + owner, status,
                   "USD" if owner % 10 == 0 else "EUR", f"{total:.2f}", f"{refunded:.2f}", created, created,
                   deleted)  # fmt: skip

    insert_rows(Order._meta.db_table, order_columns, order_rows())
    with connection.cursor() as cursor:
        cursor.execute("SELECT MIN(id), MAX(id) FROM orders_order WHERE store_id = %s", [store.pk])
        first_order, last_order = cursor.fetchone()
    assert last_order - first_order + 1 == orders, "order ids are not contiguous"

    generated = ["order_id", "external_id", "product_external_id", "quantity", "subtotal", "total"]
    line_base = defaults(OrderLine, *generated)
    line_base.update(name="Bench product", sku="")
    line_columns = [*line_base, *generated]

    def line_rows() -> Iterator[tuple[Any, ...]]:
        for n, (count, total) in enumerate(line_plan):
            for k in range(count):
                amount = f"{total * 0.85 / count:.2f}"
                yield (*line_base.values(), first_order + n, (n + 1) * 10 + k, 1 + int(2000 * rng.random() ** 2),
                       rng.randint(1, 3), amount, amount)  # fmt: skip

    lines = insert_rows(OrderLine._meta.db_table, line_columns, line_rows())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as a long-running database would have statistics
    return store.pk, first_order, first_contact, lines


def baseline_group_by(store_id: int) -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT contact_id, COUNT(*), SUM(total) FROM orders_order WHERE store_id = %s GROUP BY contact_id",
            [store_id],
        )
        cursor.fetchall()
    return time.perf_counter() - started


def mutate(cursor: Any, order_id: int, contacts: int, first_contact: int, rng: random.Random, n: int) -> None:
    """One mirror-equivalent write: what apply_order / apply_order_deleted change on an order."""
    modified = text(START + dt.timedelta(seconds=SPAN_SECONDS + n))
    kind = rng.random()
    if kind < 0.3:
        cursor.execute("UPDATE orders_order SET status = %s, date_modified = %s WHERE id = %s",
                       [rng.choice(EVENT_STATUSES), modified, order_id])  # fmt: skip
    elif kind < 0.5:
        cursor.execute("UPDATE orders_order SET refunded_total = ROUND(total * %s, 2), date_modified = %s "
                       "WHERE id = %s", [rng.choice([0.0, 0.2, 0.5, 1.0]), modified, order_id])  # fmt: skip
    elif kind < 0.7:
        cursor.execute("DELETE FROM orders_orderline WHERE order_id = %s", [order_id])
        for k in range(rng.randint(1, 3)):
            amount = f"{rng.uniform(3, 90):.2f}"
            cursor.execute(
                "INSERT INTO orders_orderline (order_id, external_id, product_external_id, variation_external_id,"
                " name, sku, quantity, subtotal, total, total_tax) VALUES (%s, %s, %s, 0, 'x', '', %s, %s, %s, 0)",
                [order_id, 10_000_000 + n * 10 + k, 1 + int(2000 * rng.random() ** 2), rng.randint(1, 3),
                 amount, amount],
            )  # fmt: skip
        cursor.execute("UPDATE orders_order SET date_modified = %s WHERE id = %s", [modified, order_id])
    elif kind < 0.8:
        cursor.execute("UPDATE orders_order SET total = %s, date_modified = %s WHERE id = %s",
                       [f"{rng.uniform(5, 300):.2f}", modified, order_id])  # fmt: skip
    elif kind < 0.9:
        cursor.execute("UPDATE orders_order SET contact_id = %s, date_modified = %s WHERE id = %s",
                       [first_contact + rng.randrange(contacts), modified, order_id])  # fmt: skip
    else:
        deleted = modified if rng.random() < 0.5 else None
        cursor.execute("UPDATE orders_order SET deleted_at = %s, date_modified = %s WHERE id = %s",
                       [deleted, modified, order_id])  # fmt: skip


def incremental(store_first: tuple[int, int], orders: int, contacts: int, events: int,
                rng: random.Random) -> tuple[list[float], list[float]]:  # fmt: skip
    from django.db import connection, transaction

    from storeloop.metrics.services import OrderMetricsUpdater

    first_order, first_contact = store_first
    updater = OrderMetricsUpdater()
    update_ms: list[float] = []
    write_ms: list[float] = []
    warmup = 20
    for n in range(warmup + events):
        order_id = first_order + rng.randrange(orders)
        with transaction.atomic():
            t0 = time.perf_counter()
            with connection.cursor() as cursor:
                mutate(cursor, order_id, contacts, first_contact, rng, n)
            t1 = time.perf_counter()
            updater.update_order_metrics(order_id)
            t2 = time.perf_counter()
        if n >= warmup:
            write_ms.append((t1 - t0) * 1000)
            update_ms.append((t2 - t1) * 1000)
    return sorted(update_ms), sorted(write_ms)


def verify(store_id: int) -> tuple[bool, float, dict[str, int]]:
    """Copy the metric tables, recompute over them, and compare row for row."""
    from django.db import connection

    from storeloop.metrics import models
    from storeloop.metrics.services import OrderMetricsUpdater

    tables = {}
    for model in (models.OrderContribution, models.OrderLineContribution, models.ContactMetrics,
                  models.DailyMetrics, models.ProductMetrics):  # fmt: skip
        columns = ", ".join(f.column for f in model._meta.concrete_fields if f.name != "id")
        tables[model._meta.db_table] = columns
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS snap_{model._meta.db_table}")
            cursor.execute(f"CREATE TABLE snap_{model._meta.db_table} AS SELECT {columns} "
                           f"FROM {model._meta.db_table} WHERE store_id = %s", [store_id])  # fmt: skip
    result = OrderMetricsUpdater().recalculate_customer_metrics(store_id)
    differences = {}
    with connection.cursor() as cursor:
        for table, columns in tables.items():
            now = f"SELECT {columns} FROM {table} WHERE store_id = {int(store_id)}"
            snap = f"SELECT {columns} FROM snap_{table}"
            cursor.execute(f"SELECT (SELECT COUNT(*) FROM ({now} EXCEPT {snap})) + "
                           f"(SELECT COUNT(*) FROM ({snap} EXCEPT {now}))")  # fmt: skip
            differences[table] = int(cursor.fetchone()[0])
    return not any(differences.values()), result.seconds, differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 orders and 10,000 contacts")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--contacts", type=int)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20260105)
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()
    orders = args.orders or (100_000 if args.quick else 1_000_000)
    contacts = args.contacts or max(1, orders // 10)
    rng = random.Random(args.seed)
    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    with temp_data_dir("storeloop-bench-metrics-") as data_dir:
        setup_django(data_dir)
        from storeloop.metrics.services import OrderMetricsUpdater

        t0 = time.perf_counter()
        store_id, first_order, first_contact, lines = build_store(orders, contacts, rng)
        print(f"built {orders:,} orders, {lines:,} lines, {contacts:,} contacts in "
              f"{time.perf_counter() - t0:.1f} s (not measured)", flush=True)  # fmt: skip

        busy = machine_busy_fraction(2.0)
        print(f"machine busy before measuring: {busy:.0%} (other work on the same cores)", flush=True)
        baseline = baseline_group_by(store_id)
        print(f"baseline  GROUP BY contact over the orders: {baseline:.3f} s", flush=True)
        updater = OrderMetricsUpdater()
        recalc = updater.recalculate_customer_metrics(store_id)
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in recalc.phase_seconds.items())
        print(f"full recompute: {recalc.seconds:.2f} s ({phases}); {recalc.seconds / baseline:.1f}x the "
              f"baseline; {recalc.counted_orders:,} counted orders, {recalc.contacts:,} contact rows, "
              f"{recalc.days:,} days, {recalc.products:,} product rows", flush=True)  # fmt: skip
        t0 = time.perf_counter()
        refresh = updater.refresh_store_models(store_id)
        refresh_s = time.perf_counter() - t0
        clv = "; ".join(
            f"{o.currency} {o.quality} ({o.customers:,} customers fitted{', ' + o.reason if o.reason else ''})"
            for o in refresh.clv
        )
        print(f"refresh (RFM quintiles + CLV fit): {refresh_s:.2f} s; {clv}", flush=True)

        update_ms, write_ms = incremental((first_order, first_contact), orders, contacts, args.events, rng)
        median, write_median = percentile(update_ms, 50), percentile(write_ms, 50)
        print(f"incremental update over {args.events:,} events: median {median:.2f} ms, "
              f"p90 {percentile(update_ms, 90):.2f} ms, p99 {percentile(update_ms, 99):.2f} ms, "
              f"max {update_ms[-1]:.2f} ms; the write itself: median {write_median:.2f} ms "
              f"(update/write {median / write_median:.1f}x)", flush=True)  # fmt: skip

        figures: dict[str, Any] = {}
        if not args.no_verify:
            same, again_s, differences = verify(store_id)
            print(f"verify: recompute over existing rows {again_s:.2f} s; incremental == full recompute: "
                  f"{same} {differences if not same else ''}", flush=True)  # fmt: skip
            figures.update(verified=same, recalc_over_existing_s=round(again_s, 2))

    print_json_line({
        "orders": orders,
        "contacts": contacts,
        "full_recalc_s": round(recalc.seconds, 2),
        "incremental_median_ms": round(median, 3),
        "lines": lines,
        "baseline_group_by_s": round(baseline, 3),
        "recalc_vs_baseline": round(recalc.seconds / baseline, 1),
        "recalc_phases_s": {k: round(v, 2) for k, v in recalc.phase_seconds.items()},
        "incremental_p90_ms": round(percentile(update_ms, 90), 3),
        "incremental_p99_ms": round(percentile(update_ms, 99), 3),
        "write_median_ms": round(write_median, 3),
        "events": args.events,
        "refresh_s": round(refresh_s, 2),
        "machine_busy_before": round(busy, 2),
        **figures,
        "machine": machine,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })  # fmt: skip


if __name__ == "__main__":
    main()
