"""Task declaration with a retry policy the worker can look up by task path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django_tasks import task


@dataclass(frozen=True)
class TaskPolicy:
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float


_POLICIES: dict[str, TaskPolicy] = {}


def durable_task(
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int | None = None,
    retry_base_seconds: float | None = None,
    retry_max_seconds: float | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """Declare a background task. Its arguments must be ids (str/int), never personal data.

    Transient failures are retried up to ``max_attempts`` in all (default
    ``STORELOOP_TASK_MAX_ATTEMPTS``); ``TerminalError`` and validation errors are not retried.
    """

    def decorate(func: Callable[..., Any]) -> Any:
        wrapped = task(queue_name=queue, priority=priority)(func)
        _POLICIES[f"{func.__module__}.{func.__qualname__}"] = TaskPolicy(
            max_attempts=max_attempts or settings.TASK_MAX_ATTEMPTS,
            retry_base_seconds=retry_base_seconds or settings.TASK_RETRY_BASE_SECONDS,
            retry_max_seconds=retry_max_seconds or settings.TASK_RETRY_MAX_SECONDS,
        )
        return wrapped

    return decorate


def policy_for(task_path: str) -> TaskPolicy:
    return _POLICIES.get(
        task_path,
        TaskPolicy(
            max_attempts=settings.TASK_MAX_ATTEMPTS,
            retry_base_seconds=settings.TASK_RETRY_BASE_SECONDS,
            retry_max_seconds=settings.TASK_RETRY_MAX_SECONDS,
        ),
    )
