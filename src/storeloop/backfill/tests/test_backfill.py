from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from tests.drain import drain

from storeloop.backfill.models import BackfillJob
from storeloop.backfill.services import OrderBackfillManager
from storeloop.contacts.models import Contact, ContactIdentity
from storeloop.core.errors import Conflict
from storeloop.integrations.woocommerce.fake import FakeWooShop, OrderQuery
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


def test_bulk_path_gives_the_same_mirror_as_the_per_order_path(shop: FakeWooShop, make_store: Any) -> None:
    from storeloop.integrations.woocommerce.client import WooCommerceClient

    with WooCommerceClient(shop.url, "ck_bf", "cs_bf", auth="query") as client:
        snapshots = [o for page in range(1, 4) for o in client.list_orders_page(page, 100).items]
    bulk_store, single_store = make_store(name="bulk"), make_store(name="single")
    apply_orders_bulk(bulk_store, snapshots)
    for snap in snapshots:
        with transaction.atomic():
            apply_order(single_store, snap)

    def shape(store: Any) -> list[tuple[Any, ...]]:
        rows = Order.objects.filter(store=store).order_by("external_id")
        return [
            (
                o.external_id,
                o.status,
                o.total,
                o.refunded_total,
                o.date_modified,
                o.contact.email if o.contact else None,
                o.contact.phone if o.contact else None,
                o.lines.count(),
            )
            for o in rows
        ]

    assert shape(bulk_store) == shape(single_store)
    assert Contact.objects.filter(store=bulk_store).count() == Contact.objects.filter(store=single_store).count()
    # Applying the same batch again changes nothing.
    again = apply_orders_bulk(bulk_store, snapshots)
    assert set(again) == {"unchanged"}


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
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
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
