"""Backfill throughput: N historical orders from the fake shop into the SQLite mirror.

Prints orders/s end to end (``OrderBackfillManager.run``: keyset slices, 3 parallel page fetches,
parsing and preparing in its fetch process, contacts resolved, orders + lines + refunds written in
bulk, a checkpoint per committed batch) and, in the same run against the same fake shop, the
floor: fetch every page with the same parallelism, parse the JSON, one bulk insert of (id,
modified, total, body) into a bare SQLite table. The ratio says how much of the floor's speed the
real path keeps. The fake shop encodes its history before timing starts (``--prerender``), so it
serves pages at network speed.

    .venv/bin/python bench/backfill.py [--orders 200000] [--parallel 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, free_port, machine_info, print_json_line, temp_data_dir

KEY, SECRET = "ck_bench", "cs_bench"


def start_fake(orders: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "storeloop.integrations.woocommerce.fake", "--port", str(port), "--initial-orders",
         str(orders), "--orders-per-minute", "0", "--consumer-key", KEY, "--consumer-secret", SECRET, "--prerender"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    return proc, json.loads(line)["url"]


def floor(url: str, orders: int, parallel: int, db_path: Path) -> float:
    """Fetch all pages (same parallelism), parse, one bulk insert into a bare table → orders/s."""
    import httpx
    import orjson

    pages = (orders + 99) // 100
    started = time.perf_counter()

    def fetch(page_numbers: list[int]) -> list[tuple[int, str, str, bytes]]:
        rows: list[tuple[int, str, str, bytes]] = []
        with httpx.Client(timeout=30) as client:
            for page in page_numbers:
                response = client.get(
                    f"{url}/wp-json/wc/v3/orders",
                    params={"page": page, "per_page": 100, "orderby": "id", "order": "asc",
                            "consumer_key": KEY, "consumer_secret": SECRET},
                )  # fmt: skip
                response.raise_for_status()
                for order in orjson.loads(response.content):
                    rows.append((order["id"], order["date_modified_gmt"], order["total"], orjson.dumps(order)))
        return rows

    chunks = [list(range(1 + i, pages + 1, parallel)) for i in range(parallel)]
    with ThreadPoolExecutor(parallel) as pool:
        rows = [row for chunk in pool.map(fetch, chunks) for row in chunk]
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE bare (id INTEGER PRIMARY KEY, modified TEXT, total TEXT, body BLOB)")
    with conn:
        conn.executemany("INSERT INTO bare VALUES (?, ?, ?, ?)", rows)
    conn.close()
    elapsed = time.perf_counter() - started
    assert len(rows) == orders, (len(rows), orders)
    return orders / elapsed


def backfill(url: str, orders: int, parallel: int) -> tuple[float, dict[str, Any]]:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from storeloop.backfill.services import OrderBackfillManager
    from storeloop.orders.models import Order
    from storeloop.stores.models import Store

    store = Store.objects.create(
        name="bench", url=url, consumer_key=KEY, consumer_secret=SECRET, webhook_secret="x", auth_mode="query",
        manage_webhooks=False,
    )  # fmt: skip
    manager = OrderBackfillManager(parallel=parallel)
    started = time.perf_counter()
    job = manager.start_backfill(store)
    status = manager.run(job.pk)
    elapsed = time.perf_counter() - started
    mirrored = Order.objects.filter(store=store).count()
    assert status.state == "completed", status
    assert mirrored == orders, (mirrored, orders)
    return orders / elapsed, {"elapsed_s": round(elapsed, 2), "outcomes": status.outcomes, "errors": status.errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 orders")
    args = parser.parse_args()
    orders = 20_000 if args.quick else args.orders
    with temp_data_dir() as data_dir:
        os.environ.update(
            STORELOOP_DATA_DIR=str(data_dir),
            STORELOOP_DATABASE_URL=f"sqlite:///{data_dir / 'bench.sqlite3'}",
            STORELOOP_LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="storeloop.config.settings",
        )
        fake, url = start_fake(orders)
        try:
            print(f"fake shop with {orders:,} orders at {url}")
            floor_rate = floor(url, orders, args.parallel, data_dir / "floor.sqlite3")
            print(f"floor (fetch + parse + one bulk insert into a bare table): {floor_rate:,.0f} orders/s")
            rate, details = backfill(url, orders, args.parallel)
            print(f"backfill end to end: {rate:,.0f} orders/s ({details})")
        finally:
            os.killpg(fake.pid, signal.SIGTERM)
            fake.wait(10)
    ratio = rate / floor_rate
    print(f"ratio: {ratio:.2f}")
    print_json_line({
        "benchmark": "backfill", "database": "sqlite", "orders": orders, "parallel": args.parallel,
        "orders_per_s": round(rate, 1), "floor_orders_per_s": round(floor_rate, 1), "ratio": round(ratio, 3),
        "machine": machine_info(),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
