"""Templates (versions, publish, rollback, preview) and the messages log, scoped to the key's store."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from storeloop.config.auth import request_store
from storeloop.core.pagination import paginate
from storeloop.messaging.models import MessageTemplate, TemplateVersion
from storeloop.messaging.schemas import (
    MessageDetailOut,
    MessageOut,
    MessagePage,
    PreviewIn,
    PreviewOut,
    PublishIn,
    ResendIn,
    ResendOut,
    RollbackIn,
    SavedVersionOut,
    TemplateDetailOut,
    TemplateIn,
    TemplateOut,
    TemplatePage,
    TemplateVersionIn,
    VersionOut,
)
from storeloop.messaging.selectors import (
    message_get_for_store,
    message_list,
    rollback_target,
    template_get_for_store,
    template_list,
    version_of,
)
from storeloop.messaging.settlement import resend_unknown
from storeloop.messaging.templates import TemplateRepository

templates_router = Router(tags=["templates"])
messages_router = Router(tags=["messages"])


def _actor(request: HttpRequest) -> str:
    return f"api-key:{request.auth.prefix}"  # type: ignore[attr-defined]


def _saved(request: HttpRequest, version: TemplateVersion) -> Status[SavedVersionOut]:
    template = template_get_for_store(store=request_store(request), template_id=version.template_id)
    return Status(201, SavedVersionOut(template=TemplateOut.of(template),
                                       version=VersionOut.of(version, template.published_id)))  # fmt: skip


def _detail(request: HttpRequest, template: MessageTemplate) -> TemplateDetailOut:
    fresh = template_get_for_store(store=request_store(request), template_id=template.pk)
    return TemplateDetailOut.of_detail(fresh)


# --- templates -----------------------------------------------------------------------------------


@templates_router.get("", response=TemplatePage, summary="List templates (one per key, channel and locale)")
def list_templates(
    request: HttpRequest,
    channel: str | None = None,
    key: str | None = None,
    locale: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> TemplatePage:
    qs = template_list(store=request_store(request), channel=channel, key=key, locale=locale)
    items, count, next_offset = paginate(qs, limit=limit, offset=offset)
    return TemplatePage(count=count, next_offset=next_offset, items=[TemplateOut.of(t) for t in items])


@templates_router.post(
    "",
    response={201: SavedVersionOut},
    summary="Save a new draft version; creates the template on its first save",
    description="Syntax, undeclared variables, private attributes and channel limits are checked; a problem "
    "comes back as 422 `invalid_template` with the field and line in `details`. Publish the version to use it.",
)
def create_template(request: HttpRequest, payload: TemplateIn) -> Status[SavedVersionOut]:
    version = TemplateRepository().save_template(
        request_store(request), payload.key, payload.channel, locale=payload.locale,
        description=payload.description, created_by=_actor(request),
        **payload.model_dump(exclude={"key", "channel", "locale", "description"}),
    )  # fmt: skip
    return _saved(request, version)


@templates_router.get("/{template_id}", response=TemplateDetailOut, summary="One template with all its versions")
def get_template(request: HttpRequest, template_id: int) -> TemplateDetailOut:
    return TemplateDetailOut.of_detail(template_get_for_store(store=request_store(request), template_id=template_id))


@templates_router.post(
    "/{template_id}/versions", response={201: SavedVersionOut}, summary="Save a new draft version of this template"
)
def save_version(request: HttpRequest, template_id: int, payload: TemplateVersionIn) -> Status[SavedVersionOut]:
    store = request_store(request)
    template = template_get_for_store(store=store, template_id=template_id)
    version = TemplateRepository().save_template(
        store, template.key, template.channel, locale=template.locale, created_by=_actor(request),
        **payload.model_dump(),
    )  # fmt: skip
    return _saved(request, version)


@templates_router.post("/{template_id}/publish", response=TemplateDetailOut, summary="Publish a version")
def publish(request: HttpRequest, template_id: int, payload: PublishIn) -> TemplateDetailOut:
    template = template_get_for_store(store=request_store(request), template_id=template_id)
    TemplateRepository().publish(version_of(template, payload.version))
    return _detail(request, template)


@templates_router.post(
    "/{template_id}/rollback",
    response=TemplateDetailOut,
    summary="Publish an older version again",
    description="Without `version`: the newest version older than the published one.",
)
def rollback(request: HttpRequest, template_id: int, payload: RollbackIn) -> TemplateDetailOut:
    template = template_get_for_store(store=request_store(request), template_id=template_id)
    TemplateRepository().publish(rollback_target(template, payload.version))
    return _detail(request, template)


@templates_router.post("/{template_id}/preview", response=PreviewOut, summary="Render a version with sample data")
def preview(request: HttpRequest, template_id: int, payload: PreviewIn) -> PreviewOut:
    template = template_get_for_store(store=request_store(request), template_id=template_id)
    version = version_of(template, payload.version)
    rendered = TemplateRepository().preview(version, payload.sample())
    return PreviewOut.of(version, rendered, template.channel)


# --- messages ------------------------------------------------------------------------------------


@messages_router.get("", response=MessagePage, summary="List messages, newest first")
def list_messages(
    request: HttpRequest,
    status: str | None = None,
    channel: str | None = None,
    contact: int | None = None,
    campaign_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> MessagePage:
    qs = message_list(
        store=request_store(request), status=status, channel=channel, contact_id=contact, campaign_id=campaign_id
    )
    items, count, next_offset = paginate(qs, limit=limit, offset=offset)
    return MessagePage(count=count, next_offset=next_offset, items=[MessageOut.of(m) for m in items])


@messages_router.post(
    "/resend",
    response=ResendOut,
    summary="Send unknown messages again (an operator's call: they may arrive twice)",
    description="Only messages whose outcome is unknown (a lost answer, a worker killed while sending) are "
    "queued again; for e-mail and WhatsApp nothing can tell whether the customer got them. Texts are settled "
    "with Twilio automatically. Consent, caps and quiet hours apply again at send time.",
)
def resend(request: HttpRequest, payload: ResendIn) -> ResendOut:
    store = request_store(request)
    return ResendOut(queued=resend_unknown(store.pk, payload.ids, by=f"api key of store {store.pk}"))


@messages_router.get(
    "/{message_id}", response=MessageDetailOut, summary="One message: status times, attempts, error, provider id"
)
def get_message(request: HttpRequest, message_id: int) -> MessageDetailOut:
    return MessageDetailOut.of_detail(message_get_for_store(store=request_store(request), message_id=message_id))
