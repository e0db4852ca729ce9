"""``OrderBackfillManager``: resumable historical import of a store's orders.

The range (``since``, ``until`` = the start time) is cut into time slices; each slice is walked by
modification-time keyset (``orders.walk.fetch_step``), never by page number, because pages shift
while the shop takes orders. ``process_batch`` fetches the next page of up to ``parallel`` slices
at once (default 3: it is the merchant's server), applies each page through the mirror's bulk
path and commits it together with the slice's new cursor: the checkpoint. A killed run resumes
from the checkpoints without losing or doubling an order; orders changed after ``until`` arrive by
webhook or reconciliation, and the versioned mirror keeps the newest either way.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from queue import Queue
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from storeloop.backfill.models import BackfillJob, BackfillSlice
from storeloop.core.errors import Conflict, NotFound, ValidationError
from storeloop.integrations.woocommerce.models import WooOrder
from storeloop.orders.bulk import apply_orders_bulk
from storeloop.orders.walk import fetch_step
from storeloop.stores.models import Store
from storeloop.stores.woo import client_for

logger = logging.getLogger("storeloop.backfill")
State = BackfillJob.State
OPEN_STATES = (State.PENDING, State.RUNNING, State.PAUSED)
ORDERS_PER_SLICE = 20_000
MAX_SLICES = 256
RUNNER_LEASE = dt.timedelta(seconds=60)


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
    """Start, advance, pause, resume and report historical backfills (design note 2A)."""

    def __init__(
        self,
        *,
        client_factory: ClientFactory = client_for,
        parallel: int = 3,
        orders_per_slice: int = ORDERS_PER_SLICE,
    ) -> None:
        if not 1 <= parallel <= 10:
            raise ValidationError("parallel page fetches must be between 1 and 10", code="invalid_parallel")
        self.client_factory = client_factory
        self.parallel = parallel
        self.orders_per_slice = orders_per_slice

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
        """Fetch and commit the next page of up to ``parallel`` slices; checkpoint each."""
        runner_id = runner_id or f"batch-{uuid.uuid4().hex[:8]}"
        job = self._claim(job_id, runner_id)
        slices = list(BackfillSlice.objects.filter(job=job, done=False).order_by("id")[: self.parallel])
        result = BatchResult()
        if slices:
            began = time.monotonic()
            with _ClientPool(self.client_factory, job.store, len(slices)) as pool:
                if len(slices) == 1:
                    steps = [_step(pool, slices[0], slices[0].cursor or slices[0].start)]
                else:
                    with ThreadPoolExecutor(len(slices), thread_name_prefix="backfill-fetch") as executor:
                        steps = list(executor.map(lambda p: _step(pool, p, p.cursor or p.start), slices))
            for piece, step in zip(slices, steps, strict=True):
                self._apply_step(job.pk, piece, step, result)
            BackfillJob.objects.filter(pk=job.pk).update(active_seconds=F("active_seconds") + time.monotonic() - began)
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
        """Process the job until it completes, is paused or cancelled, or ``should_stop``.

        Pipelined: as soon as a slice's page arrives, the fetch of that slice's next page starts,
        and only then is the page written, so the shop and the database work at the same time.
        """
        runner_id = f"run-{uuid.uuid4().hex[:8]}"
        job = self._claim(job_id, runner_id)
        pending = deque(BackfillSlice.objects.filter(job=job, done=False).order_by("id"))
        failures: dict[int, int] = {}
        stopped = False
        last_tick = time.monotonic()
        with (
            _ClientPool(self.client_factory, job.store, self.parallel) as pool,
            ThreadPoolExecutor(self.parallel, thread_name_prefix="backfill-fetch") as executor,
        ):
            inflight: dict[Future[Step], BackfillSlice] = {}

            def submit(piece: BackfillSlice, cursor: dt.datetime | None) -> None:
                inflight[executor.submit(_step, pool, piece, cursor)] = piece

            while len(inflight) < self.parallel and pending:
                piece = pending.popleft()
                submit(piece, piece.cursor or piece.start)
            while inflight:
                if should_stop():
                    stopped = True
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    piece = inflight.pop(future)
                    step = future.result()
                    _, cursor, finished, error = step
                    if error is not None:
                        failures[piece.pk] = failures.get(piece.pk, 0) + 1
                        if failures[piece.pk] >= max_consecutive_errors:
                            self._record_error(job.pk, error)
                            BackfillJob.objects.filter(pk=job.pk).update(state=State.FAILED)
                            stopped = True
                            break
                        time.sleep(min(30.0, 0.5 * 2 ** failures[piece.pk]))
                    else:
                        failures.pop(piece.pk, None)
                    if error is None and finished:
                        if pending:
                            nxt = pending.popleft()
                            submit(nxt, nxt.cursor or nxt.start)
                    else:
                        submit(piece, cursor if error is None else (piece.cursor or piece.start))
                    batch = BatchResult()
                    state = self._apply_step(job.pk, piece, step, batch)
                    if error is None:
                        piece.cursor = cursor
                    now = time.monotonic()
                    BackfillJob.objects.filter(pk=job.pk).update(active_seconds=F("active_seconds") + now - last_tick)
                    last_tick = now
                    if on_progress is not None:
                        on_progress(self.get_job_status(job.pk))
                    if state not in (State.PENDING, State.RUNNING):
                        stopped = True
                if stopped:
                    break
            for future in inflight:
                future.cancel()
        if not stopped and not BackfillSlice.objects.filter(job=job, done=False).exists():
            self._complete(job.pk)
        BackfillJob.objects.filter(pk=job.pk, runner_id=runner_id).update(runner_id="", runner_expires_at=None)
        return self.get_job_status(job.pk)

    def _apply_step(self, job_id: int, piece: BackfillSlice, step: Step, result: BatchResult) -> str:
        """Commit one fetched page and the slice's checkpoint together; returns the job's state."""
        orders, cursor, finished, error = step
        if error is not None:
            self._record_error(job_id, error)
            return str(BackfillJob.objects.values_list("state", flat=True).get(pk=job_id))
        with transaction.atomic():
            job = BackfillJob.objects.select_for_update().select_related("store").get(pk=job_id)
            outcomes = apply_orders_bulk(job.store, orders) if orders else Counter[str]()
            BackfillSlice.objects.filter(pk=piece.pk).update(cursor=cursor, done=finished)
            merged = Counter(job.outcomes)
            merged.update(outcomes)
            job.outcomes = dict(merged)
            job.done += len(orders)
            job.runner_expires_at = timezone.now() + RUNNER_LEASE
            job.save(update_fields=["outcomes", "done", "runner_expires_at", "updated_at"])
        result.fetched += len(orders)
        result.outcomes.update(outcomes)
        return job.state

    @staticmethod
    def _record_error(job_id: int, error: Exception) -> None:
        BackfillJob.objects.filter(pk=job_id).update(
            errors=F("errors") + 1, last_error=f"{type(error).__name__}: {error}"[:2000]
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


Step = tuple[list[WooOrder], dt.datetime | None, bool, Exception | None]


class _ClientPool:
    """One WooCommerce client per fetch thread, reused for the whole run (TLS setup is costly)."""

    def __init__(self, factory: ClientFactory, store: Store, size: int) -> None:
        self._clients: Queue[Any] = Queue()
        self._all = [factory(store) for _ in range(size)]
        for client in self._all:
            self._clients.put(client)

    def __enter__(self) -> _ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._all:
            client.close()

    def borrow(self) -> Any:
        return self._clients.get()

    def give_back(self, client: Any) -> None:
        self._clients.put(client)


def _step(pool: _ClientPool, piece: BackfillSlice, cursor: dt.datetime | None) -> Step:
    client = pool.borrow()
    try:
        orders, next_cursor, finished = fetch_step(client, cursor, piece.end)
        return orders, next_cursor, finished, None
    except Exception as exc:  # recorded on the job; the slice is fetched again from its checkpoint
        return [], cursor, False, exc
    finally:
        pool.give_back(client)


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
