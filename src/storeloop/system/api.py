from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from storeloop.config.auth import request_store, require_operator
from storeloop.core.errors import NotFound
from storeloop.core.pagination import paginate
from storeloop.core.tasks.worker import retry_dead_letter
from storeloop.system.selectors import dead_letters, system_health

router = Router(tags=["system"])


@router.get("/health", summary="Queue depth and age, running and failed tasks, this store's webhook state")
def health(request: HttpRequest) -> dict[str, Any]:
    return system_health([request_store(request)])


class DeadLetterOut(Schema):
    id: str
    task: str
    queue: str
    attempts: int
    error: str
    finished_at: dt.datetime | None


class DeadLetterPage(Schema):
    count: int
    next_offset: int | None
    items: list[DeadLetterOut]


@router.get("/tasks/failed", response=DeadLetterPage, summary="Dead letters: tasks that failed for good")
def failed_tasks(request: HttpRequest, limit: int = 50, offset: int = 0) -> DeadLetterPage:
    # The queue is shared by every store, so only operator keys may list or retry its dead letters.
    require_operator(request)
    items, count, next_offset = paginate(dead_letters(), limit=limit, offset=offset)
    return DeadLetterPage(
        count=count,
        next_offset=next_offset,
        items=[
            DeadLetterOut(
                id=str(t.id),
                task=t.task_path,
                queue=t.queue_name,
                attempts=len(t.worker_ids),
                error=t.exception_class_path,
                finished_at=t.finished_at,
            )
            for t in items
        ],
    )


@router.post("/tasks/{task_id}/retry", summary="Put a dead letter back on the queue")
def retry_task(request: HttpRequest, task_id: str) -> dict[str, str]:
    require_operator(request)
    if not retry_dead_letter(task_id):
        raise NotFound(f"no failed task {task_id}", code="task_not_found")
    return {"status": "requeued", "id": task_id}
