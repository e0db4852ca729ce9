from __future__ import annotations

from django.contrib import admin

from storeloop.contacts.models import Contact, ContactIdentity, ContactMerge


class IdentityInline(admin.TabularInline):  # type: ignore[type-arg]
    model = ContactIdentity
    extra = 0
    readonly_fields = ("kind", "value", "created_at")
    can_delete = False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "store", "email", "phone", "first_name", "last_name", "country", "merged_into")
    list_filter = ("store", "country")
    search_fields = ("email", "phone", "last_name")
    readonly_fields = ("merged_into",)
    inlines = [IdentityInline]


@admin.register(ContactMerge)
class ContactMergeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "store", "source", "target", "actor", "merged_at")
    readonly_fields = [f.name for f in ContactMerge._meta.fields]
