from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from ninja import Field, Schema

from storeloop.core.moments import Moment
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.selectors import AudiencePreview, CampaignFigures

ChannelName = Literal["email", "sms", "whatsapp"]
PurposeName = Literal["marketing", "transactional"]


class CampaignIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    template_key: str = Field(min_length=1, max_length=100)
    channel: ChannelName
    locale: str = Field("en", min_length=2, max_length=10)
    purpose: PurposeName = "marketing"
    audience: dict[str, Any] = Field(description="A condition in the audience language (docs/campaigns.md)")
    custom: dict[str, Any] = Field(default_factory=dict, description="Values templates see as {{ custom.* }}")


class ScheduleIn(Schema):
    at: Moment = Field(description="With an offset; with local_time, the wall-clock time for each recipient")
    local_time: bool = False


class PreviewIn(Schema):
    audience: dict[str, Any]
    channel: ChannelName | None = None
    purpose: PurposeName = "marketing"


class PreviewOut(Schema):
    audience: int
    eligible: int | None

    @staticmethod
    def of(preview: AudiencePreview) -> PreviewOut:
        return PreviewOut(audience=preview.audience, eligible=preview.eligible)


class FiguresOut(Schema):
    targeted: int
    suppressed: int
    queued: int
    held: int
    sent: int
    delivered: int
    read: int
    failed: int
    unknown: int
    cancelled: int
    unsubscribed: int
    messages: int


class CampaignOut(Schema):
    id: int
    name: str
    template_key: str
    template_version: int | None
    channel: str
    locale: str
    purpose: str
    audience: dict[str, Any]
    custom: dict[str, Any]
    state: str
    scheduled_at: dt.datetime | None
    local_time: bool
    starts_at: dt.datetime | None
    started_at: dt.datetime | None
    materialised_at: dt.datetime | None
    finished_at: dt.datetime | None
    last_error: str
    created_at: dt.datetime
    figures: FiguresOut | None = None

    @staticmethod
    def of(campaign: Campaign, figures: CampaignFigures | None = None) -> CampaignOut:
        return CampaignOut(
            id=campaign.pk, name=campaign.name, template_key=campaign.template_key,
            template_version=campaign.template.number if campaign.template else None, channel=campaign.channel,
            locale=campaign.locale, purpose=campaign.purpose, audience=campaign.audience, custom=campaign.custom,
            state=campaign.state, scheduled_at=campaign.scheduled_at, local_time=campaign.local_time,
            starts_at=campaign.starts_at, started_at=campaign.started_at, materialised_at=campaign.materialised_at,
            finished_at=campaign.finished_at, last_error=campaign.last_error, created_at=campaign.created_at,
            figures=FiguresOut(**figures.as_dict()) if figures else None,
        )  # fmt: skip
