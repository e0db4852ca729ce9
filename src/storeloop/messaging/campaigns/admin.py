"""Campaigns in the admin: create a draft (validated like the API), watch live figures, and send,
pause, resume or cancel with actions. A campaign's plan is not edited once created."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from storeloop.core.errors import ApplicationError
from storeloop.messaging.campaigns import services
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.manager import MessagingManager

PLAN = ("store", "name", "template_key", "channel", "locale", "purpose", "audience", "custom")


class CampaignAddForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Campaign
        fields = PLAN

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        store = cleaned.get("store")
        if store is not None and not self.errors:
            fields: dict[str, Any] = {name: cleaned.get(name) for name in PLAN if name != "store"}
            try:
                services.check_campaign(store, **fields)
            except ApplicationError as exc:
                raise forms.ValidationError(f"{exc.message} [{exc.code}]") from None
        return cleaned


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "name", "store", "channel", "purpose", "state", "scheduled_at", "local_time", "targeted")
    list_filter = ("state", "channel", "purpose", "store")
    search_fields = ("name", "template_key")
    list_select_related = ("store",)
    actions = ["send_now", "pause", "resume", "cancel"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = CampaignAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        if obj is None:
            return PLAN
        return (*PLAN, "template", "state", "scheduled_at", "local_time", "starts_at", "started_at",
                "materialised_at", "finished_at", "live_figures", "last_error", "created_by", "created_at")  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        return () if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its messages are the record of what was sent: cancel instead

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if change:
            return  # nothing is editable after creation
        fields = {name: form.cleaned_data[name] for name in PLAN if name != "store"}
        # The admin's add view runs in its own transaction: build the draft inside it.
        created = services.build_campaign(obj.store, created_by=f"admin:{request.user}", **fields)
        obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at

    @admin.display(description="figures (live)")
    def live_figures(self, obj: Campaign) -> str:
        figures = MessagingManager().campaign_figures(obj).as_dict()
        return format_html_join(", ", "{}: {}", figures.items())

    def _each(self, request: HttpRequest, queryset: QuerySet[Campaign], verb: str,
              action: Callable[[Campaign], Campaign]) -> None:  # fmt: skip
        done = 0
        for campaign in queryset:
            try:
                action(campaign)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{campaign.name}: {exc.message}", level=messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} campaign(s).")

    @admin.action(description="Send now")
    def send_now(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._each(request, queryset, "Started", MessagingManager().send_campaign_now)

    @admin.action(description="Pause (hold queued messages)")
    def pause(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._each(request, queryset, "Paused", MessagingManager().pause_campaign)

    @admin.action(description="Resume")
    def resume(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._each(request, queryset, "Resumed", MessagingManager().resume_campaign)

    @admin.action(description="Cancel (nothing more is sent)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._each(request, queryset, "Cancelled", MessagingManager().cancel_campaign)
