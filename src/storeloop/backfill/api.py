from __future__ import annotations

import datetime as dt

from django.http import HttpRequest
from ninja import Router, Schema, Status

from storeloop.backfill.models import BackfillJob
from storeloop.backfill.services import JobStatus, OrderBackfillManager
from storeloop.backfill.tasks import run_backfill
from storeloop.config.auth import request_store
from storeloop.core.errors import NotFound
from storeloop.core.moments import Moment
from storeloop.core.tasks import enqueue_on_commit

router = Router(tags=["backfills"])


class BackfillIn(Schema):
    since: Moment | None = None
    sync_to_crm: bool = False


class BackfillOut(Schema):
    id: int
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

    @staticmethod
    def of(status: JobStatus) -> BackfillOut:
        return BackfillOut(**{k: v for k, v in status.__dict__.items() if k != "store_id"})


def _own(request: HttpRequest, job_id: int) -> int:
    if not BackfillJob.objects.filter(pk=job_id, store=request_store(request)).exists():
        raise NotFound(f"no backfill {job_id} in this store", code="backfill_not_found")
    return job_id


@router.get("", response=list[BackfillOut], summary="This store's backfills, newest first")
def list_backfills(request: HttpRequest) -> list[BackfillOut]:
    manager = OrderBackfillManager()
    ids = BackfillJob.objects.filter(store=request_store(request)).values_list("pk", flat=True)[:50]
    return [BackfillOut.of(manager.get_job_status(pk)) for pk in ids]


@router.post("", response={201: BackfillOut}, summary="Start a backfill; a worker runs it")
def start(request: HttpRequest, payload: BackfillIn) -> Status[BackfillOut]:
    manager = OrderBackfillManager()
    job = manager.start_backfill(request_store(request), payload.since, sync_to_crm=payload.sync_to_crm)
    _enqueue(job.pk)
    return Status(201, BackfillOut.of(manager.get_job_status(job.pk)))


@router.get("/{job_id}", response=BackfillOut, summary="State, done and total, rate, ETA and errors")
def status(request: HttpRequest, job_id: int) -> BackfillOut:
    return BackfillOut.of(OrderBackfillManager().get_job_status(_own(request, job_id)))


@router.post("/{job_id}/pause", response=BackfillOut)
def pause(request: HttpRequest, job_id: int) -> BackfillOut:
    return BackfillOut.of(OrderBackfillManager().pause(_own(request, job_id)))


@router.post("/{job_id}/resume", response=BackfillOut)
def resume(request: HttpRequest, job_id: int) -> BackfillOut:
    status = OrderBackfillManager().resume(_own(request, job_id))
    _enqueue(job_id)
    return BackfillOut.of(status)


@router.post("/{job_id}/cancel", response=BackfillOut)
def cancel(request: HttpRequest, job_id: int) -> BackfillOut:
    return BackfillOut.of(OrderBackfillManager().cancel(_own(request, job_id)))


def _enqueue(job_id: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        enqueue_on_commit(run_backfill, str(job_id))
