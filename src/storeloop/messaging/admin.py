"""Admin for templates, messages and messaging connections.

Template versions are immutable: *Add template version* writes a new one through
``TemplateRepository.save_template`` (the same checks as the API and ``storeloop template save``,
errors shown on the field), and the *Publish* action makes a version the one in use (an older one:
the rollback). Messages are the dispatcher's records and read-only. Connection secrets are never
shown: connect with ``storeloop messaging connect``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from storeloop.consent.models import Channel
from storeloop.core.errors import ValidationError
from storeloop.messaging.channels.connections import MAX_CAP_HOURS, MAX_RATE
from storeloop.messaging.models import Message, MessageTemplate, MessagingConnection, TemplateVersion
from storeloop.messaging.settlement import MAX_RESEND, resend_unknown
from storeloop.messaging.templates import TemplateRepository
from storeloop.messaging.templating import ALLOWED_ROOTS
from storeloop.stores.models import Store


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A record to look at: no add, change or delete (the change page shows it read-only)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TemplateVersionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = TemplateVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("number", "subject", "variables", "created_at", "created_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "store", "key", "channel", "locale", "published_number", "updated_at")
    list_filter = ("channel", "locale", "store")
    search_fields = ("key", "description")
    list_select_related = ("store", "published")
    fields = ("store", "key", "channel", "locale", "description", "published", "created_at", "updated_at")
    # Only the description is editable: content changes are new versions, validated on save.
    readonly_fields = ("store", "key", "channel", "locale", "published", "created_at", "updated_at")
    inlines = [TemplateVersionInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a template starts with a validated version: "Add template version", the API or the CLI

    @admin.display(description="published version")
    def published_number(self, obj: MessageTemplate) -> str:
        return f"v{obj.published.number}" if obj.published else "—"


class NewVersionForm(forms.ModelForm):  # type: ignore[type-arg]
    """A new version of a store's template (a new template when the key, channel and locale are
    new), validated and saved by ``TemplateRepository.save_template`` in ``clean``."""

    store = forms.ModelChoiceField(queryset=Store.objects.order_by("name"))
    key = forms.CharField(max_length=100, help_text="e.g. order-shipped")
    channel = forms.ChoiceField(choices=Channel.choices)
    locale = forms.CharField(max_length=20, initial="en")
    variables_ = forms.MultipleChoiceField(
        label="Variables", choices=[(v, v) for v in sorted(ALLOWED_ROOTS)], initial=["contact", "order", "store"],
        widget=forms.CheckboxSelectMultiple, required=False,
    )  # fmt: skip
    wa_parameters_ = forms.CharField(
        label="WhatsApp parameters", widget=forms.Textarea(attrs={"rows": 3}), required=False,
        help_text="One expression per line, for the approved template's {{1}}, {{2}} ...",
    )  # fmt: skip
    description = forms.CharField(max_length=300, required=False)

    class Meta:
        model = TemplateVersion
        fields = ("subject", "body_text", "body_html", "wa_template_name", "wa_language")

    def __init__(self, *args: Any, created_by: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.created_by = created_by
        self.saved: TemplateVersion | None = None

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if self.errors:
            return data
        parameters = [line.strip() for line in data.get("wa_parameters_", "").splitlines() if line.strip()]
        try:
            self.saved = TemplateRepository().save_template(
                data["store"], data["key"], data["channel"], locale=data["locale"], subject=data.get("subject", ""),
                body_text=data.get("body_text", ""), body_html=data.get("body_html", ""),
                variables=data.get("variables_") or (), wa_template_name=data.get("wa_template_name", ""),
                wa_language=data.get("wa_language", ""), wa_parameters=parameters,
                description=data.get("description", ""), created_by=self.created_by,
            )  # fmt: skip
        except ValidationError as exc:
            fields = [d.get("field") for d in exc.details or [] if isinstance(d, dict)]
            field = next((f for f in fields if f in self.fields), None)
            if field is None and fields and str(fields[0]).startswith("wa_parameters"):
                field = "wa_parameters_"
            self.add_error(field, exc.message)
        return data


NEW_VERSION_FIELDS = ["store", "key", "channel", "locale", "description", "variables_", "subject", "body_text",
                      "body_html", "wa_template_name", "wa_language", "wa_parameters_"]  # fmt: skip


@admin.register(TemplateVersion)
class TemplateVersionAdmin(ReadOnlyAdmin):
    list_display = ("id", "template", "number", "is_published", "subject", "created_at", "created_by")
    list_filter = ("template__channel", "template__store")
    search_fields = ("template__key",)
    list_select_related = ("template", "template__published")
    readonly_fields = [f.name for f in TemplateVersion._meta.fields]
    actions = ["publish"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("messaging.add_templateversion"))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        user = request.user.get_username()

        class Form(NewVersionForm):
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, created_by=f"admin:{user}", **kw)

        return Form

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return super().get_fieldsets(request, obj)
        return [(None, {"fields": NEW_VERSION_FIELDS})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        assert form.saved is not None  # clean() saved it, or the form was invalid
        return form.saved

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        pass  # saved by TemplateRepository in the form's clean()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass

    @admin.display(boolean=True, description="published")
    def is_published(self, obj: TemplateVersion) -> bool:
        return obj.template.published_id == obj.pk

    @admin.action(description="Publish the selected version (an older one rolls back)", permissions=["publish"])
    def publish(self, request: HttpRequest, queryset: QuerySet[TemplateVersion]) -> None:
        versions = list(queryset.select_related("template"))
        templates = [v.template_id for v in versions]
        if len(set(templates)) != len(templates):
            self.message_user(request, "Select one version per template.", messages.ERROR)
            return
        repo = TemplateRepository()
        for version in versions:
            repo.publish(version)
        names = ", ".join(f"{v.template.key} v{v.number}" for v in versions)
        self.message_user(request, f"Published {names}.", messages.SUCCESS)

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("messaging.change_messagetemplate"))


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "store", "contact_id", "channel", "purpose", "status", "reason", "attempts", "campaign_id",
                    "created_at", "sent_at")  # fmt: skip
    list_filter = ("status", "channel", "purpose", "store")
    search_fields = ("=id", "=contact__id", "=campaign_id", "=provider_message_id", "=dedupe_key")
    list_select_related = ("store",)
    readonly_fields = [f.name for f in Message._meta.fields]
    date_hierarchy = "created_at"
    show_full_result_count = False  # a COUNT(*) of a large message table on every page is not worth it
    actions = ["resend"]

    @admin.action(description="Send unknown messages again (they may arrive twice)", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        by_store: dict[int, list[int]] = {}
        for store_id, pk in queryset.filter(status=Message.Status.UNKNOWN).values_list("store_id", "pk")[:MAX_RESEND]:
            by_store.setdefault(store_id, []).append(pk)
        user = request.user.get_username()
        queued = sum(resend_unknown(store_id, pks, by=f"admin:{user}") for store_id, pks in by_store.items())
        skipped = queryset.count() - queued
        self.message_user(request, f"Queued {queued} message(s) again; left {skipped} alone (only unknown ones, "
                                   f"at most {MAX_RESEND} at a time).", messages.SUCCESS)  # fmt: skip

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("messaging.change_message"))


def _checked_rate(rate: float) -> float:
    if not 0 < rate <= MAX_RATE:
        raise forms.ValidationError(f"must be above 0 and at most {MAX_RATE:g}")
    return rate


class ConnectionForm(forms.ModelForm):  # type: ignore[type-arg]
    # Kept in ``settings`` (``channels.factory.account_rate``); empty: no shared account limit.
    account_messages_per_second = forms.FloatField(
        required=False,
        help_text="The provider account's messages/s, shared by every store connected to the same relay login, "
        "Twilio account or WhatsApp number. Empty: only this store's rate.",
    )

    class Meta:
        model = MessagingConnection
        fields = ("messages_per_second", "marketing_cap_hours", "quiet_hours_start", "quiet_hours_end", "active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["account_messages_per_second"].initial = (self.instance.settings or {}).get(
            "account_messages_per_second"
        )

    def clean_account_messages_per_second(self) -> float | None:
        rate = self.cleaned_data.get("account_messages_per_second")
        return None if rate is None else _checked_rate(rate)

    def save(self, commit: bool = True) -> MessagingConnection:
        connection: MessagingConnection = super().save(commit=False)
        settings = dict(connection.settings or {})
        settings.pop("account_messages_per_second", None)
        if self.cleaned_data.get("account_messages_per_second") is not None:
            settings["account_messages_per_second"] = self.cleaned_data["account_messages_per_second"]
        connection.settings = settings
        if commit:
            connection.save()
        return connection

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if (data.get("quiet_hours_start") is None) != (data.get("quiet_hours_end") is None):
            raise forms.ValidationError("Quiet hours need both a start and an end (or neither, for the default).")
        cap = data.get("marketing_cap_hours")
        if cap is not None and not 0 <= cap <= MAX_CAP_HOURS:
            self.add_error("marketing_cap_hours", f"must be between 0 and {MAX_CAP_HOURS}")
        return data

    def clean_messages_per_second(self) -> float:
        return _checked_rate(float(self.cleaned_data["messages_per_second"]))


@admin.register(MessagingConnection)
class MessagingConnectionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ConnectionForm
    list_display = ("id", "store", "channel", "provider", "messages_per_second", "active", "updated_at")
    list_filter = ("channel", "provider", "active")
    list_select_related = ("store",)
    # ``credentials`` is never listed: secrets stay encrypted and out of pages. Settings are not
    # editable here because they are validated when connecting (`storeloop messaging connect`),
    # except the account rate, which has its own checked field.
    fields = ("store", "channel", "provider", "settings", "messages_per_second", "account_messages_per_second",
              "marketing_cap_hours", "quiet_hours_start", "quiet_hours_end", "active", "created_at",
              "updated_at")  # fmt: skip
    readonly_fields = ("store", "channel", "provider", "settings", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
