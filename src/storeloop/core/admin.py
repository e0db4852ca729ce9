from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.core.models import DeadLetter, ScheduledRun, TaskLease
from storeloop.core.tasks.worker import retry_dead_letter


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "task_path", "queue_name", "finished_at", "exception_class_path")
    list_filter = ("queue_name", "task_path")
    readonly_fields = (
        "id",
        "task_path",
        "queue_name",
        "args_kwargs",
        "worker_ids",
        "enqueued_at",
        "started_at",
        "finished_at",
        "exception_class_path",
        "traceback",
    )
    exclude = ("return_value", "status", "priority", "backend_name", "run_after")
    actions = ["retry"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DBTaskResult]:
        return super().get_queryset(request).filter(status=TaskResultStatus.FAILED)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry selected tasks")
    def retry(self, request: HttpRequest, queryset: QuerySet[DBTaskResult]) -> None:
        done = sum(1 for task in queryset if retry_dead_letter(task.id))
        messages.success(request, f"{done} task(s) put back on the queue")


@admin.register(TaskLease)
class TaskLeaseAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("task_id", "worker_id", "claimed_at", "expires_at")
    readonly_fields = ("task_id", "token", "worker_id", "claimed_at", "expires_at")


@admin.register(ScheduledRun)
class ScheduledRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("job", "slot", "enqueued_at")
    list_filter = ("job",)
