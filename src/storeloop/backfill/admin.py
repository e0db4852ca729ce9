from __future__ import annotations

from django.contrib import admin

from storeloop.backfill.models import BackfillJob


@admin.register(BackfillJob)
class BackfillJobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "store", "state", "done", "total", "errors", "started_at", "finished_at")
    list_filter = ("state", "store")
    readonly_fields = [f.name for f in BackfillJob._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False  # start one with `storeloop backfill start` or POST /api/v1/backfills
