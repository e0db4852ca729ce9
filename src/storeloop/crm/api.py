from __future__ import annotations

import datetime as dt

from django.http import HttpRequest
from ninja import Router, Schema, Status

from storeloop.config.auth import request_store
from storeloop.core.errors import ValidationError
from storeloop.crm.models import CrmSyncRecord
from storeloop.crm.selectors import connection_summaries, order_sync_for_store
from storeloop.crm.services import resync

router = Router(tags=["crm"])
crm_router = Router(tags=["crm"])


class AttemptOut(Schema):
    at: dt.datetime
    outcome: str
    error: str
    duration_ms: int


class SyncRecordOut(Schema):
    provider: str
    state: str
    remote_contact_id: str
    remote_deal_id: str
    attempts: int
    last_error: str
    synced_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    history: list[AttemptOut]

    @staticmethod
    def of(record: CrmSyncRecord) -> SyncRecordOut:
        return SyncRecordOut(
            provider=record.connection.provider,
            state=record.state,
            remote_contact_id=record.remote_contact_id,
            remote_deal_id=record.remote_deal_id,
            attempts=record.attempts,
            last_error=record.last_error,
            synced_at=record.synced_at,
            next_attempt_at=record.next_attempt_at,
            history=[
                AttemptOut(at=a.at, outcome=a.outcome, error=a.error, duration_ms=a.duration_ms)
                for a in list(record.history.all())[:20]
            ],
        )


class OrderSyncOut(Schema):
    order_id: int
    records: list[SyncRecordOut]


class ResyncIn(Schema):
    order_ids: list[int] | None = None
    states: list[str] | None = None
    everything: bool = False


class ResyncOut(Schema):
    queued: int


@router.get("/{order_id}/sync", response=OrderSyncOut, summary="CRM sync state and history of one order")
def order_sync(request: HttpRequest, order_id: int) -> OrderSyncOut:
    order, records = order_sync_for_store(store=request_store(request), order_id=order_id)
    return OrderSyncOut(order_id=order.pk, records=[SyncRecordOut.of(r) for r in records])


@router.post("/{order_id}/sync", response={202: ResyncOut}, summary="Sync one order to the CRM again")
def order_resync(request: HttpRequest, order_id: int) -> Status[ResyncOut]:
    store = request_store(request)
    order, _ = order_sync_for_store(store=store, order_id=order_id)
    return Status(202, ResyncOut(queued=resync(store_id=store.pk, order_ids=[order.pk])))


@crm_router.get("/connections", summary="CRM connections of this store and their records by state")
def connections(request: HttpRequest) -> list[dict[str, object]]:
    return connection_summaries(request_store(request).pk)


@crm_router.post("/resync", response={202: ResyncOut}, summary="Queue orders again: by id, by state, or all")
def bulk_resync(request: HttpRequest, payload: ResyncIn) -> Status[ResyncOut]:
    allowed = {s.value for s in CrmSyncRecord.State}
    if payload.states and not set(payload.states) <= allowed:
        raise ValidationError(f"states must be among {sorted(allowed)}", code="invalid_state",
                              details=[{"field": "states", "error": "unknown state"}])  # fmt: skip
    if payload.order_ids is None and payload.states is None and not payload.everything:
        raise ValidationError("give order_ids, states or everything=true", code="empty_resync")
    store_id = request_store(request).pk
    count = resync(store_id=store_id, order_ids=payload.order_ids, states=payload.states,
                   everything=payload.everything)  # fmt: skip
    return Status(202, ResyncOut(queued=count))
