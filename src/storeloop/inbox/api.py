from __future__ import annotations

import datetime as dt

from django.http import HttpRequest
from ninja import Router, Schema

from storeloop.config.auth import request_store
from storeloop.core.pagination import paginate
from storeloop.inbox.models import InboxDelivery
from storeloop.inbox.services import replay_delivery

router = Router(tags=["inbox"])


class DeliveryOut(Schema):
    id: int
    source: str
    topic: str
    delivery_id: str
    body_hash: str
    received_at: dt.datetime
    status: str
    outcome: str
    attempts: int
    last_error: str
    processed_at: dt.datetime | None

    @staticmethod
    def of(row: InboxDelivery) -> DeliveryOut:
        return DeliveryOut(
            id=row.pk,
            source=row.source,
            topic=row.topic,
            delivery_id=row.delivery_id,
            body_hash=row.body_hash,
            received_at=row.received_at,
            status=row.status,
            outcome=row.outcome,
            attempts=row.attempts,
            last_error=row.last_error,
            processed_at=row.processed_at,
        )


class DeliveryPage(Schema):
    count: int
    next_offset: int | None
    items: list[DeliveryOut]


@router.get("", response=DeliveryPage, summary="Recent webhook deliveries and their processing state")
def list_deliveries(
    request: HttpRequest,
    status: str | None = None,
    topic: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> DeliveryPage:
    qs = InboxDelivery.objects.filter(store=request_store(request)).defer("body").order_by("-received_at", "-id")
    if status:
        qs = qs.filter(status=status)
    if topic:
        qs = qs.filter(topic=topic)
    items, count, next_offset = paginate(qs, limit=limit, offset=offset)
    return DeliveryPage(count=count, next_offset=next_offset, items=[DeliveryOut.of(r) for r in items])


@router.post("/{delivery_id}/replay", response=DeliveryOut, summary="Process a stored delivery again")
def replay(request: HttpRequest, delivery_id: int) -> DeliveryOut:
    return DeliveryOut.of(replay_delivery(store=request_store(request), delivery_pk=delivery_id))
