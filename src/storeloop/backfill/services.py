"""``OrderBackfillManager``: resumable historical import of a store's orders.

The range (``since``, ``until`` = the start time) is cut into time slices; each slice is walked by
modification-time keyset (``orders.walk.fetch_step``), never by page number, because pages shift
while the shop takes orders. Fetching is bounded to ``parallel`` requests at once (default 3: it is
the merchant's server). Pages are applied through the mirror's bulk path and committed together
with their slices' new cursors: the checkpoint. A killed run resumes from the checkpoints without
losing or doubling an order; orders changed after ``until`` arrive by webhook or reconciliation,
and the versioned mirror keeps the newest either way.

``run`` splits the work over two processes (``backfill.feed``, ADR 7): a child fetches pages and
turns them into database-ready rows (parsed, validated, hashed) on one core while this process
normalises people, resolves contacts and writes on the other. When the writer falls behind it
commits all the waiting pages in one transaction, so the per-commit cost shrinks as load grows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from storeloop.backfill.feed import (
    FedPage,
    Feed,
    FeedClosed,
    FeedConfig,
    FeedEnd,
    FeedError,
    ProcessFeed,
    SliceTask,
    ThreadFeed,
    error_text,
    fetch_prepared,
)
from storeloop.backfill.models import BackfillJob, BackfillSlice
from storeloop.core.errors import Conflict, NotFound, ValidationError
from storeloop.orders.bulk import apply_prepared_orders
from storeloop.stores.models import Store
from storeloop.stores.woo import client_for

logger = logging.getLogger("storeloop.backfill")
State = BackfillJob.State
OPEN_STATES = (State.PENDING, State.RUNNING, State.PAUSED)
ORDERS_PER_SLICE = 20_000
MAX_SLICES = 256
RUNNER_LEASE = dt.timedelta(seconds=60)
# Pages waiting when the writer gets to them are committed together, up to this many orders: the
# write lock is then held for a fraction of a second at most, which live webhooks can wait out.
COMMIT_ORDERS = 2000
POLL_SECONDS = 0.25  # how often a waiting run looks at should_stop and its lease


@dataclass(frozen=True)
class JobStatus:
    id: int
    store_id: int
    state: str
    done: int
    total: int
    rate_per_s: float | None
    eta_seconds: float | None
    errors: int
    last_error: str
    outcomes: dict[str, int]
    since: dt.datetime | None
    until: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass
class BatchResult:
    fetched: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    finished: bool = False


ClientFactory = Callable[[Store], Any]


class OrderBackfillManager:
    """Start, advance, pause, resume and report historical backfills (design note 2A).

    ``fetch_in_subprocess``: ``run`` fetches and prepares pages in a child process (the default).
    A custom ``client_factory`` cannot cross a process boundary, so with one the pages are fetched
    in threads of this process instead.
    """

    def __init__(
        self,
        *,
        client_factory: ClientFactory | None = None,
        parallel: int = 3,
        orders_per_slice: int = ORDERS_PER_SLICE,
        fetch_in_subprocess: bool = True,
    ) -> None:
        if not 1 <= parallel <= 10:
            raise ValidationError("parallel page fetches must be between 1 and 10", code="invalid_parallel")
        self.client_factory: ClientFactory = client_factory or client_for
        self.parallel = parallel
        self.orders_per_slice = orders_per_slice
        self.fetch_in_subprocess = fetch_in_subprocess and client_factory is None

    # --- lifecycle -----------------------------------------------------------------------------

    def start_backfill(
        self, store: Store | int, since: dt.datetime | None = None, *, sync_to_crm: bool = False
    ) -> BackfillJob:
        """Create a job for ``store`` covering orders modified after ``since`` (all when None)."""
        store = _store(store)
        if since is not None and since.tzinfo is None:
            raise ValidationError("since must carry a time zone (UTC)", code="invalid_since")
        if BackfillJob.objects.filter(store=store, state__in=OPEN_STATES).exists():
            raise Conflict("this store already has an unfinished backfill; resume or cancel it", code="backfill_open")
        until = timezone.now().replace(microsecond=0)
        with self.client_factory(store) as client:
            first = client.list_orders_page(
                1, 1, modified_after=since, modified_before=until + dt.timedelta(seconds=1), orderby="modified"
            )
        total = first.total
        start = since or (first.items[0].date_modified_gmt - dt.timedelta(seconds=1) if first.items else until)
        count = max(1, min(MAX_SLICES, total // self.orders_per_slice))
        step = (until - start) / count
        bounds = [start + step * i for i in range(count)] + [until]
        with transaction.atomic(durable=True):
            job = BackfillJob.objects.create(
                store=store, since=since, until=until, total=total, sync_to_crm=sync_to_crm
            )
            BackfillSlice.objects.bulk_create(
                BackfillSlice(job=job, start=bounds[i].replace(microsecond=0), end=bounds[i + 1].replace(microsecond=0))
                for i in range(count)
            )
        logger.info("backfill %s of store %s: %s orders in %s slices", job.pk, store.pk, total, count)
        return job

    def pause(self, job_id: int) -> JobStatus:
        return self._transition(job_id, {State.PENDING, State.RUNNING}, State.PAUSED)

    def resume(self, job_id: int) -> JobStatus:
        return self._transition(job_id, {State.PAUSED, State.FAILED}, State.PENDING)

    def cancel(self, job_id: int) -> JobStatus:
        return self._transition(job_id, set(OPEN_STATES) | {State.FAILED}, State.CANCELLED)

    def _transition(self, job_id: int, allowed: set[str], to: str) -> JobStatus:
        with transaction.atomic(durable=True):
            job = _job(job_id, lock=True)
            if job.state not in allowed:
                raise Conflict(f"a {job.state} backfill cannot become {to}", code="backfill_state")
            job.state = to
            fields = ["state", "updated_at"]
            if to in (State.PAUSED, State.CANCELLED):
                job.runner_id, job.runner_expires_at = "", None
                fields += ["runner_id", "runner_expires_at"]
            if to == State.CANCELLED:
                job.finished_at = timezone.now()
                fields.append("finished_at")
            job.save(update_fields=fields)
        return self.get_job_status(job_id)

    # --- progress --------------------------------------------------------------------------------

    def get_job_status(self, job_id: int) -> JobStatus:
        job = _job(job_id)
        rate = job.done / job.active_seconds if job.active_seconds > 0 else None
        remaining = max(job.total - job.done, 0)
        eta = remaining / rate if rate and job.state in OPEN_STATES else None
        return JobStatus(
            id=job.pk,
            store_id=job.store_id,
            state=job.state,
            done=job.done,
            total=job.total,
            rate_per_s=rate,
            eta_seconds=eta,
            errors=job.errors,
            last_error=job.last_error,
            outcomes=dict(job.outcomes),
            since=job.since,
            until=job.until,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )

    def process_batch(self, job_id: int, *, runner_id: str | None = None) -> BatchResult:
        """Fetch the next page of up to ``parallel`` slices and commit them with their checkpoints."""
        runner_id = runner_id or f"batch-{uuid.uuid4().hex[:8]}"
        job = self._claim(job_id, runner_id)
        slices = list(BackfillSlice.objects.filter(job=job, done=False).order_by("id")[: self.parallel])
        result = BatchResult()
        if slices:
            began = time.monotonic()
            tasks = [SliceTask(p.pk, p.cursor or p.start, p.end) for p in slices]
            with ThreadPoolExecutor(len(tasks), thread_name_prefix="backfill-fetch") as executor:
                steps = list(executor.map(lambda task: self._fetch_one(job.store, task), tasks))
            for step in steps:
                if isinstance(step, FeedError):
                    self._record_error(job.pk, step.message)
            pages = [step for step in steps if isinstance(step, FedPage)]
            self._commit_pages(job, runner_id, pages, time.monotonic() - began, result)
        if not BackfillSlice.objects.filter(job=job, done=False).exists():
            self._complete(job.pk)
            result.finished = True
        return result

    def run(
        self,
        job_id: int,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[JobStatus], None] | None = None,
        max_consecutive_errors: int = 5,
    ) -> JobStatus:
        """Process the job until it completes, is paused or cancelled, fails, or ``should_stop``.

        Pipelined: the feed keeps fetching and preparing the next pages while this process writes
        the ones that arrived; each commit checkpoints the slices it advanced.
        """
        runner_id = f"run-{uuid.uuid4().hex[:8]}"
        job = self._claim(job_id, runner_id)
        try:
            tasks = [
                SliceTask(p.pk, p.cursor or p.start, p.end)
                for p in BackfillSlice.objects.filter(job=job, done=False).order_by("id")
            ]
            stopped = False
            if tasks:
                feed = self._open_feed(job.store, tasks, max_consecutive_errors)
                try:
                    with _collector_relaxed():
                        stopped = self._drain(job, runner_id, feed, should_stop, on_progress)
                finally:
                    feed.close()
            if not stopped and not BackfillSlice.objects.filter(job=job, done=False).exists():
                self._complete(job.pk)
        finally:  # whatever happened, the next runner need not wait for the claim to expire
            BackfillJob.objects.filter(pk=job.pk, runner_id=runner_id).update(runner_id="", runner_expires_at=None)
        return self.get_job_status(job.pk)

    def _open_feed(self, store: Store, tasks: list[SliceTask], max_consecutive_errors: int) -> Feed:
        if self.fetch_in_subprocess:
            return ProcessFeed(
                FeedConfig(
                    url=store.url,
                    consumer_key=store.consumer_key,
                    consumer_secret=store.consumer_secret,
                    auth=store.auth_mode,
                    timeout_seconds=settings.WOOCOMMERCE_TIMEOUT_SECONDS,
                    tasks=tuple(tasks),
                    parallel=self.parallel,
                    max_consecutive_errors=max_consecutive_errors,
                )
            )
        return ThreadFeed(
            lambda: self.client_factory(store),
            tasks,
            parallel=self.parallel,
            max_consecutive_errors=max_consecutive_errors,
        )

    def _drain(
        self,
        job: BackfillJob,
        runner_id: str,
        feed: Feed,
        should_stop: Callable[[], bool],
        on_progress: Callable[[JobStatus], None] | None,
    ) -> bool:
        """Commit the feed's pages until it ends (False) or the run must stop (True)."""
        last_tick = renewed = time.monotonic()
        while not should_stop():
            try:
                messages = feed.receive(POLL_SECONDS, COMMIT_ORDERS)
            except FeedClosed as exc:
                if not should_stop():  # not the same signal that stops us (a process group stopped)
                    self._fail(job.pk, error_text(exc))
                return True
            now = time.monotonic()
            pages = [m for m in messages if isinstance(m, FedPage)]
            if pages:
                if not self._commit_pages(job, runner_id, pages, now - last_tick, BatchResult()):
                    return True  # paused, cancelled or taken over meanwhile
                last_tick = renewed = now
                if on_progress is not None:
                    on_progress(self.get_job_status(job.pk))
            elif now - renewed > RUNNER_LEASE.total_seconds() / 3:  # a slow shop: keep the claim alive
                if not self._renew(job.pk, runner_id):
                    return True
                renewed = now
            for message in messages:
                if isinstance(message, FeedError):
                    if message.fatal:
                        self._fail(job.pk, message.message)
                        return True
                    self._record_error(job.pk, message.message)
                elif isinstance(message, FeedEnd):
                    return False
        return True

    def _commit_pages(
        self, job: BackfillJob, runner_id: str, pages: list[FedPage], seconds: float, result: BatchResult
    ) -> bool:
        """Apply pages and checkpoint their slices in one transaction; False when the run must stop.

        Nothing is written when the job was paused or cancelled meanwhile, or another runner took
        it over: those pages are fetched again from the checkpoints by whoever resumes it.
        """
        with transaction.atomic():
            row = (
                BackfillJob.objects.select_for_update()
                .filter(pk=job.pk)
                .values_list("state", "runner_id", "outcomes")
                .first()
            )
            if row is None or row[0] != State.RUNNING or row[1] != runner_id:
                return False
            outcomes_so_far = row[2]
            orders = [order for page in pages for order in page.orders]
            outcomes = apply_prepared_orders(job.store, orders) if orders else Counter[str]()
            checkpoints = {page.slice_id: page for page in pages}  # the last page of each slice
            for slice_id, page in checkpoints.items():
                BackfillSlice.objects.filter(pk=slice_id).update(cursor=page.cursor, done=page.finished)
            merged = Counter(outcomes_so_far)
            merged.update(outcomes)
            now = timezone.now()
            BackfillJob.objects.filter(pk=job.pk).update(
                outcomes=dict(merged),
                done=F("done") + len(orders),
                active_seconds=F("active_seconds") + seconds,
                runner_expires_at=now + RUNNER_LEASE,
                updated_at=now,
            )
        result.fetched += len(orders)
        result.outcomes.update(outcomes)
        return True

    def _fetch_one(self, store: Store, task: SliceTask) -> FedPage | FeedError:
        client = self.client_factory(store)
        try:
            return fetch_prepared(client, task)
        except Exception as exc:  # recorded on the job; the slice is fetched again from its checkpoint
            return FeedError(task.id, error_text(exc), False)
        finally:
            client.close()

    @staticmethod
    def _record_error(job_id: int, message: str) -> None:
        BackfillJob.objects.filter(pk=job_id).update(errors=F("errors") + 1, last_error=message[:2000])

    def _fail(self, job_id: int, message: str) -> None:
        logger.warning("backfill %s failed: %s", job_id, message)
        self._record_error(job_id, message)
        BackfillJob.objects.filter(pk=job_id, state=State.RUNNING).update(state=State.FAILED)

    @staticmethod
    def _renew(job_id: int, runner_id: str) -> bool:
        return bool(
            BackfillJob.objects.filter(pk=job_id, runner_id=runner_id, state=State.RUNNING).update(
                runner_expires_at=timezone.now() + RUNNER_LEASE
            )
        )

    # --- internals -------------------------------------------------------------------------------

    def _claim(self, job_id: int, runner_id: str) -> BackfillJob:
        """Make ``runner_id`` the job's one runner, unless another live runner holds it."""
        now = timezone.now()
        with transaction.atomic():
            job = _job(job_id, lock=True)
            if job.state not in (State.PENDING, State.RUNNING):
                raise Conflict(f"the backfill is {job.state}", code="backfill_state")
            held = (
                job.runner_id and job.runner_id != runner_id and job.runner_expires_at and job.runner_expires_at > now
            )
            if held:
                raise Conflict("another process is running this backfill", code="backfill_busy")
            job.runner_id = runner_id
            job.runner_expires_at = now + RUNNER_LEASE
            job.state = State.RUNNING
            job.started_at = job.started_at or now
            job.save(update_fields=["runner_id", "runner_expires_at", "state", "started_at", "updated_at"])
        return job

    def _complete(self, job_id: int) -> None:
        with transaction.atomic():
            updated = BackfillJob.objects.filter(pk=job_id, state=State.RUNNING).update(
                state=State.COMPLETED, finished_at=timezone.now(), runner_id="", runner_expires_at=None
            )
        if updated:
            logger.info("backfill %s completed", job_id)
            after_backfill(job_id)


@contextlib.contextmanager
def _collector_relaxed() -> Iterator[None]:
    """Collect the young generation less often while writing: every page allocates thousands of
    short-lived tuples and no cycles, and each collection would rescan the pages in flight."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 50_000), before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def after_backfill(job_id: int) -> None:
    """Enqueue the follow-up work of a completed backfill (metrics recompute, optional CRM sync)."""
    from storeloop.backfill.tasks import backfill_followup

    with transaction.atomic():
        from storeloop.core.tasks import enqueue_on_commit

        enqueue_on_commit(backfill_followup, str(job_id))


def _store(store: Store | int) -> Store:
    if isinstance(store, Store):
        return store
    found = Store.objects.filter(pk=store).first()
    if found is None:
        raise NotFound(f"no store {store}", code="store_not_found")
    return found


def _job(job_id: int, *, lock: bool = False) -> BackfillJob:
    qs = BackfillJob.objects.select_related("store")
    if lock:
        qs = qs.select_for_update()
    job = qs.filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"no backfill {job_id}", code="backfill_not_found")
    return job
