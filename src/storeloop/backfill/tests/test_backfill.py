from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from tests.drain import drain

from storeloop.backfill.models import BackfillJob
from storeloop.backfill.services import OrderBackfillManager
from storeloop.contacts.models import Contact, ContactIdentity
from storeloop.core.errors import Conflict
from storeloop.integrations.woocommerce.client import WooCommerceClient
from storeloop.integrations.woocommerce.fake import FakeWooShop, OrderQuery
from storeloop.integrations.woocommerce.models import WooOrder
from storeloop.orders.bulk import apply_orders_bulk
from storeloop.orders.mirror import apply_order
from storeloop.orders.models import Order, OrderLine

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop() -> Iterator[FakeWooShop]:
    with FakeWooShop(consumer_key="ck_bf", consumer_secret="cs_bf", seed=5, initial_orders=1500) as fake:
        yield fake


@pytest.fixture
def shop_store(make_store: Any, shop: FakeWooShop) -> Any:
    return make_store(url=shop.url, consumer_key="ck_bf", consumer_secret="cs_bf", auth_mode="query")


def session_processes(session: int) -> set[int]:
    """Live processes of a session (zombies excluded)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def all_orders(shop: FakeWooShop) -> list[dict[str, Any]]:
    return shop.list_orders(OrderQuery(limit=1_000_000))[1]


def assert_mirror_equals_shop(shop: FakeWooShop, store: Any) -> None:
    truth = {o["id"]: o for o in all_orders(shop)}
    mirrored = {o.external_id: o for o in Order.objects.filter(store=store)}
    assert sorted(mirrored) == sorted(truth)
    for order_id, order in truth.items():
        mine = mirrored[order_id]
        assert (mine.status, mine.total) == (order["status"], Decimal(order["total"])), order_id
        assert mine.date_modified.replace(tzinfo=None).isoformat() == order["date_modified_gmt"]


def test_backfill_imports_every_order_once_with_its_lines_and_contacts(shop: FakeWooShop, shop_store: Any) -> None:
    manager = OrderBackfillManager(orders_per_slice=250)
    job = manager.start_backfill(shop_store)
    assert job.total == 1500
    assert job.slices.count() == 6
    status = manager.run(job.pk)
    assert status.state == "completed"
    assert Order.objects.filter(store=shop_store).count() == 1500
    assert status.outcomes["created"] == 1500
    assert OrderLine.objects.filter(order__store=shop_store).count() == sum(
        len(o["line_items"]) for o in all_orders(shop)
    )
    assert_mirror_equals_shop(shop, shop_store)
    # One contact per identity: no identity value points at two contacts, no contact without one.
    assert not Contact.objects.filter(store=shop_store, identities__isnull=True).exists()
    emails = ContactIdentity.objects.filter(store=shop_store, kind="email")
    assert emails.count() == emails.values("value").distinct().count()
    guest_emails = {o["billing"]["email"].strip().lower() for o in all_orders(shop)}
    assert Contact.objects.filter(store=shop_store).count() <= len(guest_emails)


def test_a_second_open_backfill_is_refused(shop_store: Any) -> None:
    manager = OrderBackfillManager()
    manager.start_backfill(shop_store)
    with pytest.raises(Conflict) as exc:
        manager.start_backfill(shop_store)
    assert exc.value.code == "backfill_open"
    assert BackfillJob.objects.count() == 1


def test_interrupted_and_resumed_by_another_runner(shop: FakeWooShop, shop_store: Any) -> None:
    manager = OrderBackfillManager(orders_per_slice=300)
    job = manager.start_backfill(shop_store, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    for _ in range(3):
        manager.process_batch(job.pk, runner_id="first")
    partial = Order.objects.count()
    assert 0 < partial < 1500
    # The first runner dies; its claim expires and a new runner takes over from the checkpoints.
    BackfillJob.objects.filter(pk=job.pk).update(runner_expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    status = OrderBackfillManager(parallel=2).run(job.pk)
    assert status.state == "completed"
    assert Order.objects.count() == 1500
    assert_mirror_equals_shop(shop, shop_store)


def test_a_live_runner_is_not_doubled(shop_store: Any) -> None:
    manager = OrderBackfillManager()
    job = manager.start_backfill(shop_store)
    manager.process_batch(job.pk, runner_id="alive")
    with pytest.raises(Conflict) as exc:
        manager.process_batch(job.pk, runner_id="intruder")
    assert exc.value.code == "backfill_busy"


def test_live_changes_during_a_backfill_keep_the_newest_version(
    shop: FakeWooShop, shop_store: Any, live_server: Any, settings: Any
) -> None:
    from storeloop.stores.services import ensure_webhooks

    settings.PUBLIC_URL = live_server.url
    shop_store.manage_webhooks = True
    shop_store.save()
    ensure_webhooks(shop_store)
    manager = OrderBackfillManager(orders_per_slice=300)
    job = manager.start_backfill(shop_store)
    manager.process_batch(job.pk, runner_id="r")
    # While the import runs, the shop changes orders both already imported and not yet imported.
    ids = sorted(o["id"] for o in all_orders(shop))
    changed = [ids[0], ids[1], ids[-1], ids[-2], ids[700]]
    for order_id in changed:
        shop.set_status(order_id, "completed")
    new_order = shop.create_order()["id"]
    assert shop.flush()
    drain()
    while not manager.process_batch(job.pk, runner_id="r").finished:
        pass
    drain()
    assert_mirror_equals_shop(shop, shop_store)
    assert set(Order.objects.filter(external_id__in=changed).values_list("status", flat=True)) == {"completed"}
    assert Order.objects.filter(external_id=new_order).exists()


def test_pause_resume_cancel(shop_store: Any) -> None:
    manager = OrderBackfillManager()
    job = manager.start_backfill(shop_store)
    assert manager.pause(job.pk).state == "paused"
    with pytest.raises(Conflict):
        manager.process_batch(job.pk)
    assert manager.resume(job.pk).state == "pending"
    assert manager.cancel(job.pk).state == "cancelled"
    with pytest.raises(Conflict):
        manager.resume(job.pk)


def mirror_shape(store: Any) -> list[tuple[Any, ...]]:
    """Everything the mirror holds about a store's orders, their lines, refunds and contacts."""
    rows = Order.objects.filter(store=store).select_related("contact").order_by("external_id")
    shape = []
    for o in rows:
        contact = o.contact
        shape.append(
            (
                o.external_id, o.number, o.woo_customer_id, o.status, o.currency, o.total, o.total_tax,
                o.shipping_total, o.discount_total, o.refunded_total, o.payment_method, o.payment_method_title,
                o.is_cod, o.date_created, o.date_modified, o.date_paid, o.date_completed, o.billing, o.shipping,
                o.meta_data, o.customer_note, o.payload_hash, o.deleted_at,
                None if contact is None else (
                    contact.email, contact.phone, contact.woo_customer_id, contact.first_name, contact.last_name,
                    contact.country, sorted(contact.identities.values_list("kind", "value")),
                ),
                [
                    (li.external_id, li.product_id, li.product_external_id, li.variation_external_id, li.name,
                     li.sku, li.quantity, li.subtotal, li.total, li.total_tax)
                    for li in o.lines.order_by("external_id")
                ],
                [(r.external_id, r.reason, r.amount) for r in o.refunds.order_by("external_id")],
            )
        )  # fmt: skip
    return shape


def fetch_snapshots(shop: FakeWooShop, pages: int) -> list[WooOrder]:
    with WooCommerceClient(shop.url, "ck_bf", "cs_bf", auth="query") as client:
        return [o for page in range(1, pages + 1) for o in client.list_orders_page(page, 100).items]


def apply_one_by_one(store: Any, snapshots: list[WooOrder]) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for snap in snapshots:
        with transaction.atomic():
            outcomes[str(apply_order(store, snap))] += 1
    return outcomes


def test_bulk_path_gives_the_same_mirror_as_the_per_order_path(shop: FakeWooShop, make_store: Any) -> None:
    snapshots = fetch_snapshots(shop, 3)
    bulk_store, single_store = make_store(name="bulk"), make_store(name="single")
    assert apply_orders_bulk(bulk_store, snapshots) == Counter({"created": 300})
    apply_one_by_one(single_store, snapshots)
    assert mirror_shape(bulk_store) == mirror_shape(single_store)
    assert Contact.objects.filter(store=bulk_store).count() == Contact.objects.filter(store=single_store).count()
    # Applying the same batch again changes nothing.
    again = apply_orders_bulk(bulk_store, snapshots)
    assert set(again) == {"unchanged"}


def test_bulk_updates_restores_and_skips_stale_versions_like_the_per_order_path(
    shop: FakeWooShop, make_store: Any
) -> None:
    from storeloop.orders.mirror import apply_order_deleted

    before = fetch_snapshots(shop, 2)
    bulk_store, single_store = make_store(name="bulk"), make_store(name="single")
    apply_orders_bulk(bulk_store, before)
    apply_one_by_one(single_store, before)
    ids = [s.id for s in before[:4]]
    shop.set_status(ids[0], "completed")
    shop.refund_order(ids[1], "1.50", reason="scratched")
    shop.update_order(ids[2], customer_note="leave at the door")
    shop.delete_order(ids[3])  # trashed on the shop, mirrored as deleted, then restored: a newer snapshot
    for store in (bulk_store, single_store):
        with transaction.atomic():
            apply_order_deleted(store, ids[3])
    shop.restore_order(ids[3])
    with WooCommerceClient(shop.url, "ck_bf", "cs_bf", auth="query") as client:
        newer = [client.get_order(i) for i in ids]
    assert apply_orders_bulk(bulk_store, newer) == Counter({"updated": 4})
    apply_one_by_one(single_store, newer)
    assert mirror_shape(bulk_store) == mirror_shape(single_store)
    assert Order.objects.get(store=bulk_store, external_id=ids[3]).deleted_at is None
    assert Order.objects.get(store=bulk_store, external_id=ids[1]).refunds.get().amount == Decimal("1.50")
    # The old versions arrive late (a slow page): they are stale and change nothing.
    assert apply_orders_bulk(bulk_store, before[:4]) == Counter({"stale": 4})
    assert mirror_shape(bulk_store) == mirror_shape(single_store)
    # One batch holding two versions of an order keeps the newer, whichever comes first.
    for batch in ([newer[0], before[0]], [before[0], newer[0]]):
        other = make_store(name="both versions")
        assert apply_orders_bulk(other, batch) == Counter({"created": 1, "unchanged": 1})
        assert Order.objects.get(store=other).status == "completed"


def test_bulk_follows_merged_contacts_to_the_live_one(shop: FakeWooShop, make_store: Any) -> None:
    snapshots = fetch_snapshots(shop, 1)
    store = make_store()
    first = next(s for s in snapshots if s.billing.email)
    email = first.billing.email.strip().lower()
    old = Contact.objects.create(store=store, email=email)
    ContactIdentity.objects.create(store=store, contact=old, kind="email", value=email)
    middle = Contact.objects.create(store=store, email="middle@example.com")
    live = Contact.objects.create(store=store, email="live@example.com")
    # A chain left by two merges; the identity still points at the first contact.
    Contact.objects.filter(pk=old.pk).update(merged_into=middle)
    Contact.objects.filter(pk=middle.pk).update(merged_into=live)
    apply_orders_bulk(store, [first])
    assert Order.objects.get(store=store).contact_id == live.pk
    assert Contact.objects.filter(store=store).count() == 3


@pytest.mark.slow
def test_cli_backfill_killed_then_resumed(shop: FakeWooShop, shop_store: Any, sqlite_or_pg_url: str) -> None:
    env = {**os.environ, "STORELOOP_DATABASE_URL": sqlite_or_pg_url}
    shop.faults.update({"latency_ms": 30})  # slow enough to kill it half-way
    proc = subprocess.Popen(
        [sys.executable, "-m", "storeloop.cli.main", "backfill", "start", "--store", str(shop_store.pk)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while Order.objects.count() < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_processes(proc.pid) == {proc.pid, *session_processes(proc.pid)}
    assert len(session_processes(proc.pid)) == 2  # the CLI and its fetch process
    os.kill(proc.pid, signal.SIGKILL)  # the CLI only: its fetch process must notice and end too
    proc.wait()
    deadline = time.monotonic() + 10
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_processes(proc.pid) == set()
    partial = Order.objects.count()
    assert 300 <= partial < 1500
    shop.faults.update({"latency_ms": 0})
    job = BackfillJob.objects.get()
    assert job.state == "running"  # killed without a chance to pause
    BackfillJob.objects.filter(pk=job.pk).update(runner_expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    resumed = subprocess.run(
        [sys.executable, "-m", "storeloop.cli.main", "backfill", "resume", "--job", str(job.pk)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert Order.objects.count() == 1500
    assert BackfillJob.objects.get().state == "completed"
    assert_mirror_equals_shop(shop, shop_store)


def test_completion_recomputes_metrics(shop: FakeWooShop, shop_store: Any) -> None:
    from tests.drain import drain

    from storeloop.metrics.definitions import COUNTED_STATUSES
    from storeloop.metrics.models import ContactMetrics

    manager = OrderBackfillManager()
    job = manager.start_backfill(shop_store)
    assert manager.run(job.pk).state == "completed"
    drain()  # the follow-up task
    counted = Order.objects.filter(store=shop_store, status__in=COUNTED_STATUSES)
    contacts_with_orders = counted.exclude(contact__isnull=True).values("contact_id").distinct().count()
    assert ContactMetrics.objects.filter(store=shop_store).values("contact_id").distinct().count() == (
        contacts_with_orders
    )
