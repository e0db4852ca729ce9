"""Enqueue so that a task can never run before, or be lost after, the data it refers to."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django_tasks import task_backends
from django_tasks.base import TaskResultStatus
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult, get_date_max

from storeloop.core.bulk import insert_rows

_ID_TYPES = (str, int)
_TASK_ROW = (
    "id", "status", "enqueued_at", "args_kwargs", "priority", "task_path", "worker_ids", "queue_name",
    "backend_name", "run_after", "return_value", "exception_class_path", "traceback",
)  # fmt: skip
_validated: set[tuple[str, int, str, str]] = set()


def enqueue_on_commit(task: Any, *args: str | int, run_after: Any = None) -> None:
    """Enqueue ``task(*args)`` bound to the current transaction.

    With the database backend the task row is inserted in the caller's transaction: workers see it
    exactly when the business data commits and a crash cannot separate the two (a transactional
    outbox). Other backends get ``transaction.on_commit``. Arguments must be ids: they are stored
    in the queue table, which is no place for personal data.
    """
    for arg in args:
        if not isinstance(arg, _ID_TYPES) or isinstance(arg, bool):
            raise TypeError(f"task arguments must be ids (str or int), got {type(arg).__name__}")
    bound = task.using(run_after=run_after) if run_after is not None else task
    backend = task_backends[bound.backend]
    if isinstance(backend, DatabaseBackend):
        _insert_task_row(backend, bound, args)
    else:
        transaction.on_commit(lambda: bound.enqueue(*args), robust=True)


def _insert_task_row(backend: DatabaseBackend, bound: Any, args: tuple[str | int, ...]) -> None:
    """The row ``DatabaseBackend.enqueue`` would create, written with one prepared INSERT.

    The backend's own path builds a model instance, a ``TaskResult`` and sends ``task_enqueued``
    for every call; on the webhook path that was a quarter of the request's CPU. The task is
    validated by the backend once per task, priority, queue and backend; the row is identical
    (a test compares the two).
    """
    key = (bound.module_path, bound.priority, bound.queue_name, backend.alias)
    if key not in _validated:
        backend.validate_task(bound)
        _validated.add(key)
    insert_rows(
        DBTaskResult,
        _TASK_ROW,
        [
            (
                backend._get_id(),
                TaskResultStatus.READY,
                timezone.now(),
                {"args": list(args), "kwargs": {}},
                bound.priority,
                bound.module_path,
                [],
                bound.queue_name,
                backend.alias,
                bound.run_after if bound.run_after is not None else get_date_max(),
                None,
                "",
                "",
            )
        ],
    )
