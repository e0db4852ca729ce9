"""The two-process run: fetch errors, pause and stop mid-run, a dying fetch process, the threaded feed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storeloop.backfill.models import BackfillJob, BackfillSlice
from storeloop.backfill.services import JobStatus, OrderBackfillManager
from storeloop.backfill.tests.test_backfill import assert_mirror_equals_shop
from storeloop.integrations.woocommerce.client import WooCommerceClient
from storeloop.integrations.woocommerce.fake import FakeWooShop
from storeloop.orders.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop() -> Iterator[FakeWooShop]:
    with FakeWooShop(consumer_key="ck_bf", consumer_secret="cs_bf", seed=11, initial_orders=1200) as fake:
        yield fake


@pytest.fixture
def shop_store(make_store: Any, shop: FakeWooShop) -> Any:
    return make_store(url=shop.url, consumer_key="ck_bf", consumer_secret="cs_bf", auth_mode="query")


def feeder_pids() -> list[int]:
    """Fetch processes started by this process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"storeloop.backfill.feeder" in cmdline:
            found.append(int(entry.name))
    return found


def test_the_threaded_feed_imports_the_same_as_the_fetch_process(shop: FakeWooShop, make_store: Any) -> None:
    def factory(store: Any) -> WooCommerceClient:
        return WooCommerceClient(store.url, store.consumer_key, store.consumer_secret, auth="query")

    threaded = make_store(url=shop.url, consumer_key="ck_bf", consumer_secret="cs_bf", auth_mode="query")
    manager = OrderBackfillManager(client_factory=factory, orders_per_slice=300)
    assert manager.fetch_in_subprocess is False
    status = manager.run(manager.start_backfill(threaded).pk)
    assert status.state == "completed"
    assert status.outcomes["created"] == 1200
    assert_mirror_equals_shop(shop, threaded)
    assert feeder_pids() == []


def test_failed_fetches_are_counted_and_retried_from_the_checkpoint(shop: FakeWooShop, shop_store: Any) -> None:
    manager = OrderBackfillManager(orders_per_slice=300)
    job = manager.start_backfill(shop_store)
    # Terminal answers (the client does not retry a 400): each one is a failed step for the feed.
    shop.faults.update({"fail_next": 2, "fail_next_status": 400})
    status = manager.run(job.pk)
    assert status.state == "completed"
    assert status.errors == 2
    assert status.last_error.startswith("WooBadRequest: ")
    assert Order.objects.filter(store=shop_store).count() == 1200
    assert_mirror_equals_shop(shop, shop_store)


def test_too_many_failures_in_a_row_fail_the_job_and_resume_finishes_it(shop: FakeWooShop, shop_store: Any) -> None:
    manager = OrderBackfillManager(orders_per_slice=300, parallel=1)
    job = manager.start_backfill(shop_store)
    shop.faults.update({"fail_next": 1000, "fail_next_status": 400})
    status = manager.run(job.pk, max_consecutive_errors=2)
    assert status.state == "failed"
    assert status.errors == 2
    assert Order.objects.filter(store=shop_store).count() == 0
    assert BackfillJob.objects.get().runner_id == ""  # the claim is released at once
    shop.faults.update({"fail_next": 0})
    manager.resume(job.pk)
    assert manager.run(job.pk).state == "completed"
    assert_mirror_equals_shop(shop, shop_store)


def test_a_pause_during_the_run_stops_writing_and_resume_continues(shop: FakeWooShop, shop_store: Any) -> None:
    manager = OrderBackfillManager(orders_per_slice=200)
    job = manager.start_backfill(shop_store)
    seen: list[JobStatus] = []

    def pause_once(status: JobStatus) -> None:
        if not seen:
            manager.pause(job.pk)
        seen.append(status)

    status = manager.run(job.pk, on_progress=pause_once)
    assert status.state == "paused"
    assert len(seen) == 1  # nothing was committed after the pause
    imported = Order.objects.filter(store=shop_store).count()
    assert imported == seen[0].outcomes["created"] < 1200
    assert feeder_pids() == []  # the fetch process ended with the run
    manager.resume(job.pk)
    status = manager.run(job.pk)
    assert status.state == "completed"
    assert status.outcomes["created"] == 1200
    assert_mirror_equals_shop(shop, shop_store)


def test_should_stop_leaves_a_resumable_job(shop: FakeWooShop, shop_store: Any) -> None:
    manager = OrderBackfillManager(orders_per_slice=200)
    job = manager.start_backfill(shop_store)
    progress: list[JobStatus] = []
    status = manager.run(job.pk, should_stop=lambda: bool(progress), on_progress=progress.append)
    assert status.state == "running"
    assert 0 < Order.objects.filter(store=shop_store).count() < 1200
    assert BackfillJob.objects.get().runner_id == ""
    # Every committed page moved its slice's checkpoint; the rest starts where it was.
    assert BackfillSlice.objects.filter(job=job, cursor__isnull=False).exists()
    assert manager.run(job.pk).state == "completed"
    assert_mirror_equals_shop(shop, shop_store)


def test_a_killed_fetch_process_fails_the_job_and_resume_finishes_it(shop: FakeWooShop, shop_store: Any) -> None:
    manager = OrderBackfillManager(orders_per_slice=200)
    job = manager.start_backfill(shop_store)
    shop.faults.update({"latency_ms": 100})  # slow enough that the process is still fetching

    def kill_feeder(status: JobStatus) -> None:
        for pid in feeder_pids():
            os.kill(pid, signal.SIGKILL)

    status = manager.run(job.pk, on_progress=kill_feeder)
    assert status.state == "failed"
    assert status.last_error.startswith("FeedClosed: the fetch process ended unexpectedly")
    assert Order.objects.filter(store=shop_store).count() < 1200
    shop.faults.update({"latency_ms": 0})
    manager.resume(job.pk)
    assert manager.run(job.pk).state == "completed"
    assert Order.objects.filter(store=shop_store).count() == 1200
    assert_mirror_equals_shop(shop, shop_store)


def test_the_fetch_process_ends_when_its_parent_stops_reading(shop: FakeWooShop, shop_store: Any) -> None:
    from storeloop.backfill.feed import FeedConfig, ProcessFeed, SliceTask

    job = OrderBackfillManager().start_backfill(shop_store)
    piece = job.slices.get()
    feed = ProcessFeed(
        FeedConfig(
            url=shop.url,
            consumer_key="ck_bf",
            consumer_secret="cs_bf",
            auth="query",
            timeout_seconds=5.0,
            tasks=(SliceTask(piece.pk, piece.start, piece.end),),
            parallel=1,
            max_consecutive_errors=1,
        )
    )
    assert len(feeder_pids()) == 1
    assert feed.receive(10.0, 100)  # it runs; now the parent goes away without reading the rest
    feed.close()
    deadline = time.monotonic() + 10
    while feeder_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert feeder_pids() == []
