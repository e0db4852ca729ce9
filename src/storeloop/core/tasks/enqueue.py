"""Enqueue so that a task can never run before, or be lost after, the data it refers to."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django_tasks import task_backends

_ID_TYPES = (str, int)


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
    if type(backend).__module__.startswith("django_tasks_db"):
        bound.enqueue(*args)
    else:
        transaction.on_commit(lambda: bound.enqueue(*args), robust=True)
