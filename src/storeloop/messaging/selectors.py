"""Reads of templates, messages and messaging connections, always scoped to one store."""

from __future__ import annotations

from django.db.models import Count, Max, QuerySet

from storeloop.consent.models import Channel
from storeloop.core.errors import Conflict, NotFound, ValidationError
from storeloop.messaging.models import Message, MessageTemplate, MessagingConnection, TemplateVersion
from storeloop.stores.models import Store


def _choice(value: str | None, field: str, allowed: list[str]) -> str | None:
    if value and value not in allowed:
        raise ValidationError(
            f"{field} must be one of {', '.join(allowed)}",
            code=f"invalid_{field}",
            details=[{"field": field, "error": f"one of {allowed}"}],
        )
    return value or None


def template_list(
    *, store: Store, channel: str | None = None, key: str | None = None, locale: str | None = None
) -> QuerySet[MessageTemplate]:
    qs = (
        MessageTemplate.objects.filter(store=store)
        .select_related("published")
        .annotate(version_count=Count("versions"), latest_version=Max("versions__number"))
        .order_by("key", "channel", "locale")
    )
    if channel := _choice(channel, "channel", Channel.values):
        qs = qs.filter(channel=channel)
    if key:
        qs = qs.filter(key=key)
    if locale:
        qs = qs.filter(locale=locale)
    return qs


def template_get_for_store(*, store: Store, template_id: int) -> MessageTemplate:
    template = template_list(store=store).filter(pk=template_id).prefetch_related("versions").first()
    if template is None:
        raise NotFound(f"no template {template_id} in this store", code="template_not_found")
    return template


def template_by_key(*, store: Store, key: str, channel: str, locale: str = "en") -> MessageTemplate:
    """The template named by its natural key (the CLI's way of naming one)."""
    template = template_list(store=store, channel=channel, key=key, locale=locale).prefetch_related("versions").first()
    if template is None:
        raise NotFound(f"no {channel} template {key!r} ({locale}) in store {store.pk}", code="template_not_found")
    return template


def version_of(template: MessageTemplate, number: int | None) -> TemplateVersion:
    """Version ``number`` of ``template``; without a number the published one, else the newest."""
    if number is None:
        version = template.published or template.versions.order_by("-number").first()
    else:
        version = template.versions.filter(number=number).first()
    if version is None:
        which = f"version {number}" if number is not None else "any version"
        raise NotFound(f"template {template.pk} has no {which}", code="version_not_found")
    return version


def rollback_target(template: MessageTemplate, number: int | None) -> TemplateVersion:
    """The version a rollback publishes: ``number`` if given (older than the published one), else
    the newest version older than the published one."""
    current = template.published
    if current is None:
        raise Conflict("nothing is published yet: publish a version instead", code="nothing_published")
    if number is not None:
        if number >= current.number:
            raise ValidationError(
                f"a rollback goes to a version older than the published v{current.number}; "
                f"to publish v{number} use publish",
                code="not_an_older_version",
                details=[{"field": "version", "error": f"below {current.number}"}],
            )
        return version_of(template, number)
    older = template.versions.filter(number__lt=current.number).order_by("-number").first()
    if older is None:
        raise Conflict(f"v{current.number} is the oldest version: nothing to roll back to", code="no_older_version")
    return older


def message_list(
    *,
    store: Store,
    status: str | None = None,
    channel: str | None = None,
    contact_id: int | None = None,
    campaign_id: int | None = None,
) -> QuerySet[Message]:
    qs = Message.objects.filter(store=store).select_related("template", "template__template").order_by("-id")
    if status := _choice(status, "status", Message.Status.values):
        qs = qs.filter(status=status)
    if channel := _choice(channel, "channel", Channel.values):
        qs = qs.filter(channel=channel)
    if contact_id is not None:
        qs = qs.filter(contact_id=contact_id)
    if campaign_id is not None:
        qs = qs.filter(campaign_id=campaign_id)
    return qs


def message_get_for_store(*, store: Store, message_id: int) -> Message:
    message = message_list(store=store).filter(pk=message_id).first()
    if message is None:
        raise NotFound(f"no message {message_id} in this store", code="message_not_found")
    return message


def connection_list(*, store_id: int) -> QuerySet[MessagingConnection]:
    return MessagingConnection.objects.filter(store_id=store_id).order_by("channel")


def connection_for_channel(*, store_id: int, channel: str) -> MessagingConnection:
    _choice(channel, "channel", Channel.values)
    connection = connection_list(store_id=store_id).filter(channel=channel).first()
    if connection is None:
        raise NotFound(
            f"store {store_id} has no {channel} connection: connect one with `storeloop messaging connect`",
            code="channel_not_configured",
        )
    return connection
