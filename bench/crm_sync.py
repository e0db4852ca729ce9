"""CRM sync throughput: N orders pushed to the fake HubSpot held to 190 requests per 10 s.

HubSpot's budget, not our code, is the ceiling here, so the figure that matters is how much of
the permitted budget the sync uses (requests sent / the most the window permits), with no 429 storm
and no duplicate in the CRM. The fake HubSpot runs as its own process and enforces the budget.

    .venv/bin/python bench/crm_sync.py [--orders 20000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, free_port, machine_info, print_json_line, temp_data_dir

RATE, WINDOW = 190, 10.0


def start_fake() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "storeloop.integrations.hubspot.fake", "--port", str(port), "--rate-limit", str(RATE),
         "--window-seconds", str(WINDOW)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = json.loads(proc.stdout.readline().decode())["url"]
    return proc, url


def fake_state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/__fake__/state", timeout=10) as response:
        state: dict[str, Any] = json.loads(response.read())
        return state


def make_orders(store: Any, count: int) -> None:
    """Synthetic orders written through the mirror's bulk path (not measured)."""
    from storeloop.integrations.woocommerce.models import parse_order
    from storeloop.orders.bulk import apply_orders_bulk

    template = json.loads((ROOT / "tests" / "fixtures" / "woocommerce" / "order.json").read_text())
    batch = []
    for n in range(1, count + 1):
        order = dict(template, id=n, number=str(n), total=f"{10 + n % 90}.50")
        order["billing"] = dict(template["billing"], email=f"customer{n % (count // 3 + 1)}@example.com")
        batch.append(parse_order(order))
        if len(batch) == 1000:
            apply_orders_bulk(store, batch)
            batch = []
    if batch:
        apply_orders_bulk(store, batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 orders")
    args = parser.parse_args()
    orders = 2_000 if args.quick else args.orders
    with temp_data_dir() as data_dir:
        os.environ.update(
            STORELOOP_DATA_DIR=str(data_dir),
            STORELOOP_DATABASE_URL=f"sqlite:///{data_dir / 'bench.sqlite3'}",
            STORELOOP_LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="storeloop.config.settings",
        )
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from django.db import transaction

        from storeloop.crm.connections import check_connection, connect_hubspot
        from storeloop.crm.models import CrmSyncRecord
        from storeloop.crm.services import drain_connection, mark_orders_changed
        from storeloop.orders.models import Order
        from storeloop.stores.models import Store

        fake, url = start_fake()
        try:
            store = Store.objects.create(name="bench", url="https://bench.example", consumer_key="ck",
                                         consumer_secret="cs", webhook_secret="x", manage_webhooks=False)  # fmt: skip
            make_orders(store, orders)
            connection = connect_hubspot(store_id=store.pk, token="pat-test", base_url=url)
            check_connection(connection)
            ids = list(Order.objects.filter(store=store).values_list("pk", flat=True))
            with transaction.atomic():
                mark_orders_changed(store.pk, ids)
            before = fake_state(url)
            started = time.perf_counter()
            while CrmSyncRecord.objects.exclude(state="synced").exists():
                drain_connection(connection.pk, budget_seconds=3600)
                if CrmSyncRecord.objects.filter(state="dead").exists():
                    break
                pending_retry = CrmSyncRecord.objects.filter(state="failed")
                if pending_retry.exists():
                    pending_retry.update(next_attempt_at=None, state="pending")
            elapsed = time.perf_counter() - started
            after = fake_state(url)
        finally:
            os.killpg(fake.pid, signal.SIGTERM)
            fake.wait(10)
        synced = CrmSyncRecord.objects.filter(state="synced").count()
    requests = after["request_count"] - before["request_count"]
    http_429 = after["count_429"] - before["count_429"]
    # A sliding window allows at most RATE requests in any WINDOW, so over ``elapsed`` seconds
    # starting from an empty window the most HubSpot permits is RATE × ceil(elapsed / WINDOW).
    permitted = RATE * math.ceil(elapsed / WINDOW)
    share = requests / permitted
    rate = synced / elapsed
    print(f"{synced:,} of {orders:,} orders synced in {elapsed:.1f}s: {rate:,.1f} records/s")
    print(f"requests {requests:,} of {permitted:,.0f} permitted ({share:.2f} of the budget); 429s: {http_429}")
    print(f"fake HubSpot holds {after['deals']:,} deals, {after['contacts']:,} contacts, "
          f"{after['line_items']:,} line items; duplicates {after['duplicates']}")  # fmt: skip
    print_json_line({
        "benchmark": "crm_sync", "database": "sqlite", "records": synced, "orders": orders,
        "records_per_s": round(rate, 2), "requests": requests, "budget_share": round(share, 3),
        "http_429": http_429, "duplicates": after["duplicates"], "elapsed_s": round(elapsed, 1),
        "machine": machine_info(),
    })  # fmt: skip
    return 0 if synced == orders and after["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
