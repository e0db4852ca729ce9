"""Request and response shapes of the templates and messages API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from storeloop.messaging.models import Message, MessageTemplate, TemplateVersion
from storeloop.messaging.templating import Rendered

ChannelName = Literal["email", "sms", "whatsapp"]


class StrictIn(Schema):
    """Input: an unknown field is a typo to report, not something to drop silently."""

    model_config = ConfigDict(extra="forbid")


# --- templates -----------------------------------------------------------------------------------


class TemplateVersionIn(StrictIn):
    """A new version's content; validated by ``TemplateRepository.save_template``."""

    subject: str = ""
    body_text: str = ""
    body_html: str = ""
    variables: list[str] = Field(default=["contact", "order", "store"], description="contact, order, store, custom")
    wa_template_name: str = ""
    wa_language: str = ""
    wa_parameters: list[str] = Field(default=[], description="Jinja expressions, one per approved-template parameter")


class TemplateIn(TemplateVersionIn):
    key: str = Field(description="e.g. order-confirmation; saving under an existing key adds a version")
    channel: ChannelName
    locale: str = "en"
    description: str = Field(default="", description="kept from the first save")


class PublishIn(StrictIn):
    version: int = Field(ge=1)


class RollbackIn(StrictIn):
    version: int | None = Field(default=None, ge=1, description="default: the newest older than the published one")


class PreviewIn(StrictIn):
    """Sample data, field by field over the built-in sample (a contact named Zoë, order 1042 …)."""

    version: int | None = Field(default=None, ge=1, description="default: the published version, else the newest")
    contact: dict[str, Any] = {}
    order: dict[str, Any] = {}
    store: dict[str, Any] = {}
    custom: dict[str, Any] = {}

    def sample(self) -> dict[str, Any]:
        return {"contact": self.contact, "order": self.order, "store": self.store, "custom": self.custom}


class VersionOut(Schema):
    id: int
    number: int
    published: bool
    variables: list[str]
    subject: str
    body_text: str
    body_html: str
    wa_template_name: str
    wa_language: str
    wa_parameters: list[str]
    created_at: dt.datetime
    created_by: str

    @staticmethod
    def of(version: TemplateVersion, published_id: int | None) -> VersionOut:
        return VersionOut(
            id=version.pk, number=version.number, published=version.pk == published_id,
            variables=list(version.variables), subject=version.subject, body_text=version.body_text,
            body_html=version.body_html, wa_template_name=version.wa_template_name, wa_language=version.wa_language,
            wa_parameters=list(version.wa_parameters), created_at=version.created_at, created_by=version.created_by,
        )  # fmt: skip


class TemplateOut(Schema):
    id: int
    key: str
    channel: str
    locale: str
    description: str
    published_version: int | None
    latest_version: int | None
    version_count: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @staticmethod
    def of(template: MessageTemplate) -> TemplateOut:
        return TemplateOut(
            id=template.pk, key=template.key, channel=template.channel, locale=template.locale,
            description=template.description,
            published_version=template.published.number if template.published else None,
            latest_version=getattr(template, "latest_version", None),
            version_count=getattr(template, "version_count", 0),
            created_at=template.created_at, updated_at=template.updated_at,
        )  # fmt: skip


class TemplateDetailOut(TemplateOut):
    versions: list[VersionOut] = Field(description="newest first")

    @staticmethod
    def of_detail(template: MessageTemplate) -> TemplateDetailOut:
        return TemplateDetailOut(
            **TemplateOut.of(template).model_dump(),
            versions=[VersionOut.of(v, template.published_id) for v in template.versions.all()],
        )


class TemplatePage(Schema):
    count: int
    next_offset: int | None
    items: list[TemplateOut]


class SavedVersionOut(Schema):
    template: TemplateOut
    version: VersionOut


class SmsSizeOut(Schema):
    encoding: str
    characters: int
    segments: int
    non_gsm: list[str]


class PreviewOut(Schema):
    version: int
    subject: str
    text: str
    html: str
    wa_parameters: list[str]
    sms: SmsSizeOut | None = Field(description="SMS templates: how the rendered text will be sent")

    @staticmethod
    def of(version: TemplateVersion, rendered: Rendered, channel: str) -> PreviewOut:
        sms = None
        if channel == "sms":
            from storeloop.integrations.twilio.segments import count_segments

            info = count_segments(rendered.text)
            sms = SmsSizeOut(encoding=info.encoding, characters=info.characters, segments=info.segments,
                             non_gsm=list(info.non_gsm))  # fmt: skip
        return PreviewOut(version=version.number, subject=rendered.subject, text=rendered.text, html=rendered.html,
                          wa_parameters=list(rendered.wa_parameters), sms=sms)  # fmt: skip


# --- messages ------------------------------------------------------------------------------------


class MessageTemplateRef(Schema):
    template_id: int
    key: str
    version: int


class MessageOut(Schema):
    id: int
    contact_id: int
    channel: str
    purpose: str
    status: str
    reason: str = Field(description="why suppressed, delayed or failed")
    template: MessageTemplateRef | None
    campaign_id: int | None
    priority: int
    attempts: int
    provider: str
    provider_message_id: str
    last_error: str
    created_at: dt.datetime
    not_before: dt.datetime
    attempted_at: dt.datetime | None
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    read_at: dt.datetime | None

    @staticmethod
    def of(message: Message) -> MessageOut:
        version = message.template
        ref = None
        if version is not None:
            ref = MessageTemplateRef(template_id=version.template_id, key=version.template.key, version=version.number)
        return MessageOut(
            id=message.pk, contact_id=message.contact_id, channel=message.channel, purpose=message.purpose,
            status=message.status, reason=message.reason, template=ref, campaign_id=message.campaign_id,
            priority=message.priority, attempts=message.attempts, provider=message.provider,
            provider_message_id=message.provider_message_id, last_error=message.last_error,
            created_at=message.created_at, not_before=message.not_before, attempted_at=message.attempted_at,
            sent_at=message.sent_at, delivered_at=message.delivered_at, read_at=message.read_at,
        )  # fmt: skip


class MessageDetailOut(MessageOut):
    dedupe_key: str
    idempotency_key: uuid.UUID
    context: dict[str, Any]

    @staticmethod
    def of_detail(message: Message) -> MessageDetailOut:
        return MessageDetailOut(
            **MessageOut.of(message).model_dump(),
            dedupe_key=message.dedupe_key,
            idempotency_key=message.idempotency_key,
            context=message.context,
        )


class MessagePage(Schema):
    count: int
    next_offset: int | None
    items: list[MessageOut]


class ResendIn(StrictIn):
    ids: list[int] = Field(description="Ids of unknown messages to send again (at most 1,000); others are left alone")


class ResendOut(Schema):
    queued: int
