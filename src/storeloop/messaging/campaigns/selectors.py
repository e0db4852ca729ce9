"""Reads of campaigns: store-scoped lookups, live figures and audience previews."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from storeloop.consent.models import Channel, ConsentEvent, Purpose
from storeloop.core.errors import ValidationError
from storeloop.messaging.campaigns.audience import compile_audience
from storeloop.messaging.campaigns.eligibility import eligible_q
from storeloop.messaging.campaigns.errors import CampaignNotFound
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.models import Message
from storeloop.stores.models import Store

Status = Message.Status


def campaign_get_for_store(*, store: Store, campaign_id: int) -> Campaign:
    campaign = Campaign.objects.filter(store=store, pk=campaign_id).first()
    if campaign is None:
        raise CampaignNotFound(f"no campaign {campaign_id} in this store")
    return campaign


def campaign_list(*, store: Store | None = None, state: str | None = None) -> QuerySet[Campaign]:
    campaigns = Campaign.objects.order_by("-id")
    if store is not None:
        campaigns = campaigns.filter(store=store)
    if state:
        if state not in Campaign.State.values:
            raise ValidationError(f"state must be one of {', '.join(Campaign.State.values)}", code="invalid_state")
        campaigns = campaigns.filter(state=state)
    return campaigns


@dataclass(frozen=True)
class CampaignFigures:
    """Where the campaign's recipients are now.

    ``targeted``: contacts in the audience (so far, while materialising); ``suppressed``: kept out
    by consent when materialised plus stopped by the gate at send time; ``queued``: waiting or in
    flight; ``held``: paused; ``sent``: accepted by the provider (``delivered`` and ``read`` are
    subsets); ``failed``: terminal errors; ``unknown``: a worker died mid-call (never resent);
    ``unsubscribed``: recipients who withdrew marketing consent on the channel after it was sent.
    """

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

    @property
    def done(self) -> int:
        """Recipients whose outcome is settled (for progress: out of ``targeted``)."""
        return self.suppressed + self.sent + self.failed + self.unknown + self.cancelled

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def campaign_figures(campaign: Campaign) -> CampaignFigures:
    """Live figures: one aggregate over the campaign's messages plus the two counts kept on the row."""
    withdrew = ConsentEvent.objects.filter(
        contact_id=OuterRef("contact_id"), channel=OuterRef("channel"), purpose=Purpose.MARKETING,
        action=ConsentEvent.Action.WITHDRAW, occurred_at__gte=OuterRef("sent_at"),
    )  # fmt: skip
    sent = [Status.SENT, Status.DELIVERED, Status.READ]
    figures = Message.objects.filter(store_id=campaign.store_id, campaign_id=campaign.pk).aggregate(
        messages=Count("pk"),
        queued=Count("pk", filter=Q(status__in=[Status.QUEUED, Status.SENDING])),
        held=Count("pk", filter=Q(status=Status.HELD)),
        sent=Count("pk", filter=Q(status__in=sent)),
        delivered=Count("pk", filter=Q(status__in=[Status.DELIVERED, Status.READ])),
        read=Count("pk", filter=Q(status=Status.READ)),
        failed=Count("pk", filter=Q(status=Status.FAILED)),
        unknown=Count("pk", filter=Q(status=Status.UNKNOWN)),
        cancelled=Count("pk", filter=Q(status=Status.CANCELLED)),
        suppressed=Count("pk", filter=Q(status=Status.SUPPRESSED)),
        unsubscribed=Count("pk", filter=Q(sent_at__isnull=False) & Q(Exists(withdrew))),
    )
    counts: dict[str, int] = {k: int(v or 0) for k, v in figures.items()}
    counts["suppressed"] += campaign.excluded
    return CampaignFigures(targeted=campaign.targeted, **counts)


@dataclass(frozen=True)
class AudiencePreview:
    audience: int  # contacts the condition selects
    eligible: int | None  # of those, how many the consent gate would let through now (given a channel)


def audience_preview(
    *, store: Store, audience: Any, channel: str | None = None, purpose: str = Purpose.MARKETING
) -> AudiencePreview:
    """Count an audience now (one query), and with a channel how many consent would allow."""
    if channel is not None and channel not in Channel.values:
        raise ValidationError(f"channel must be one of {', '.join(Channel.values)}", code="invalid_channel")
    if purpose not in Purpose.values:
        raise ValidationError(f"purpose must be one of {', '.join(Purpose.values)}", code="invalid_purpose")
    now = timezone.now()
    contacts = compile_audience(store, audience, now=now)
    if channel is None:
        return AudiencePreview(audience=contacts.count(), eligible=None)
    counts = contacts.aggregate(total=Count("pk"), eligible=Count("pk", filter=eligible_q(channel, purpose, now)))
    return AudiencePreview(audience=counts["total"], eligible=counts["eligible"])
