"""The health view: the work queue, dead letters and each store's webhook state."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.db.models import QuerySet
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.core.tasks.health import queue_health
from storeloop.inbox.models import InboxDelivery
from storeloop.stores.models import Store, StoreWebhook


def store_webhook_health(store: Store) -> dict[str, Any]:
    hooks = list(StoreWebhook.objects.filter(store=store).order_by("topic"))
    return {
        "store_id": store.pk,
        "name": store.name,
        "manage_webhooks": store.manage_webhooks,
        "last_reconciled_at": store.last_reconciled_at,
        "reconciled_until": store.reconciled_until,
        "last_reconcile_error": store.last_reconcile_error or None,
        "webhooks_ok": all(h.state == StoreWebhook.State.ACTIVE for h in hooks) if hooks else None,
        "webhooks": [
            {
                "topic": h.topic,
                "state": h.state,
                "last_checked_at": h.last_checked_at,
                "last_problem": h.last_problem or None,
                "last_problem_at": h.last_problem_at,
                "repairs": h.reenabled_count,
            }
            for h in hooks
        ],
        "inbox_pending": InboxDelivery.objects.filter(store=store, status=InboxDelivery.Status.RECEIVED).count(),
        "inbox_failed": InboxDelivery.objects.filter(store=store, status=InboxDelivery.Status.FAILED).count(),
    }


def system_health(stores: list[Store]) -> dict[str, Any]:
    return {"queue": asdict(queue_health()), "stores": [store_webhook_health(s) for s in stores]}


def dead_letters() -> QuerySet[DBTaskResult]:
    failed: QuerySet[DBTaskResult] = DBTaskResult.objects.filter(status=TaskResultStatus.FAILED)
    return failed.order_by("-finished_at")
