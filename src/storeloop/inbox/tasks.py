from __future__ import annotations

from storeloop.core.tasks import durable_task
from storeloop.inbox.services import process_delivery


@durable_task(queue="webhooks", priority=10, max_attempts=10)
def process_inbox_delivery(delivery_id: str) -> str:
    return process_delivery(int(delivery_id))


@durable_task(queue="maintenance", max_attempts=3)
def prune_inbox() -> int:
    from storeloop.inbox.services import prune_processed

    return prune_processed()
