"""Campaign use cases: create, schedule, start, pause, resume, cancel and complete.

Every state change locks the campaign row, so it serialises with the materialiser (which holds
the same lock for each batch it inserts): a pause either sees a batch's messages and holds them,
or the materialiser sees the pause and stops. Work for the workers is enqueued in the same
transaction (``enqueue_on_commit``), so it exists exactly when the change does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import orjson
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from storeloop.consent.models import Channel, Purpose
from storeloop.core.errors import NotFound, ValidationError
from storeloop.messaging.campaigns.audience import validate_audience
from storeloop.messaging.campaigns.errors import CampaignStateError
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.models import Message, TemplateVersion
from storeloop.messaging.templates import TemplateRepository
from storeloop.stores.models import Store

State = Campaign.State
Status = Message.Status
# Time zones run from UTC-12 to UTC+14: a local-time campaign starts when the first zone is due
# and is past everywhere 12 hours after its wall-clock time in UTC.
EARLIEST_ZONE = dt.timedelta(hours=14)
LATEST_ZONE = dt.timedelta(hours=12)
PAST_GRACE = dt.timedelta(minutes=5)
STALLED_AFTER = dt.timedelta(minutes=10)  # no batch for this long while running: its task was lost
MAX_CUSTOM_BYTES = 4096
PENDING = (Status.QUEUED, Status.HELD, Status.SENDING)


def _locked(campaign_id: int) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign_id)


def _template(store: Store, key: str, channel: str, locale: str) -> TemplateVersion:
    try:
        return TemplateRepository().get_template(store, key, channel, locale)
    except NotFound as exc:
        raise ValidationError(f"{exc.message}; publish it first", code="template_not_found",
                              details=[{"field": "template_key", "error": "not published"}]) from None  # fmt: skip


def _enqueue_materialise(campaign: Campaign, now: dt.datetime) -> None:
    from storeloop.core.tasks import enqueue_on_commit
    from storeloop.messaging.tasks import materialise_campaign

    later = campaign.starts_at if campaign.starts_at and campaign.starts_at > now else None
    enqueue_on_commit(materialise_campaign, str(campaign.pk), run_after=later)


def _check_custom(custom: Mapping[str, Any] | None) -> dict[str, Any]:
    if custom is None:
        return {}
    if not isinstance(custom, Mapping) or not all(isinstance(k, str) and k.isidentifier() for k in custom):
        raise ValidationError("custom is an object whose keys are names such as discount_code", code="invalid_custom",
                              details=[{"field": "custom"}])  # fmt: skip
    try:
        size = len(orjson.dumps(dict(custom)))
    except TypeError:
        raise ValidationError("custom holds only JSON values", code="invalid_custom") from None
    if size > MAX_CUSTOM_BYTES:
        raise ValidationError(f"custom is at most {MAX_CUSTOM_BYTES} bytes of JSON", code="invalid_custom")
    return dict(custom)


def check_campaign(
    store: Store,
    *,
    name: str,
    template_key: str,
    channel: str,
    audience: Any,
    purpose: str = Purpose.MARKETING,
    locale: str = "en",
    custom: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate a campaign's fields (audience, published template, custom values); the cleaned fields."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError("a campaign needs a name of 1 to 200 characters", code="invalid_name",
                              details=[{"field": "name"}])  # fmt: skip
    if channel not in Channel.values:
        raise ValidationError(f"channel must be one of {', '.join(Channel.values)}", code="invalid_channel",
                              details=[{"field": "channel"}])  # fmt: skip
    if purpose not in Purpose.values:
        raise ValidationError(f"purpose must be one of {', '.join(Purpose.values)}", code="invalid_purpose",
                              details=[{"field": "purpose"}])  # fmt: skip
    validate_audience(audience)
    custom_values = _check_custom(custom)
    _template(store, template_key, channel, locale)
    return {"name": name, "template_key": template_key, "channel": channel, "audience": audience, "purpose": purpose,
            "locale": locale, "custom": custom_values}  # fmt: skip


def build_campaign(store: Store, *, created_by: str = "", **fields: Any) -> Campaign:
    """Validate and insert a draft (call inside a transaction)."""
    return Campaign.objects.create(store=store, created_by=created_by[:150], **check_campaign(store, **fields))


def create_campaign(store: Store, **fields: Any) -> Campaign:
    """A draft campaign: audience and template checked now (the template must be published)."""
    with transaction.atomic(durable=True):
        return build_campaign(store, **fields)


def plan_schedule(campaign: Campaign, at: dt.datetime, *, local_time: bool, now: dt.datetime) -> None:
    """Set the schedule on a locked draft or scheduled campaign and enqueue its start."""
    if campaign.state not in (State.DRAFT, State.SCHEDULED):
        raise CampaignStateError(
            f"campaign {campaign.pk} is {campaign.state}; only draft or scheduled campaigns can be scheduled"
            + (" (resume it instead)" if campaign.state == State.PAUSED else "")
        )
    if local_time:
        # The wall-clock time counts, in each recipient's zone; an offset given with it is ignored.
        scheduled = at.replace(tzinfo=dt.UTC)
        starts, last = scheduled - EARLIEST_ZONE, scheduled + LATEST_ZONE
    else:
        if at.tzinfo is None:
            raise ValidationError("give the time with its offset (e.g. 2026-06-01T10:00:00+02:00), or use local_time",
                                  code="naive_datetime", details=[{"field": "at"}])  # fmt: skip
        scheduled = starts = last = at.astimezone(dt.UTC)
    if last < now - PAST_GRACE:
        raise ValidationError("that time has passed; send it now or pick a later time", code="schedule_in_past",
                              details=[{"field": "at"}])  # fmt: skip
    _template(campaign.store, campaign.template_key, campaign.channel, campaign.locale)
    campaign.state = State.SCHEDULED
    campaign.scheduled_at = scheduled
    campaign.local_time = local_time
    campaign.starts_at = starts
    campaign.last_error = ""
    campaign.save(update_fields=["state", "scheduled_at", "local_time", "starts_at", "last_error", "updated_at"])
    _enqueue_materialise(campaign, now)


def schedule_campaign(campaign: Campaign, at: dt.datetime, *, local_time: bool = False) -> Campaign:
    with transaction.atomic(durable=True):
        locked = _locked(campaign.pk)
        plan_schedule(locked, at, local_time=local_time, now=timezone.now())
        return locked


def start_campaign(campaign_id: int, *, enqueue: bool = False) -> Campaign:
    """A due scheduled campaign starts running with the template version published now (and,
    with ``enqueue``, its materialisation is queued in the same transaction).

    No-op for any other state or a campaign not due yet (the task that calls this may run late,
    twice, or after a reschedule). Without a published template it pauses, saying why.
    """
    now = timezone.now()
    with transaction.atomic(durable=True):
        campaign = _locked(campaign_id)
        if campaign.state != State.SCHEDULED or campaign.starts_at is None or campaign.starts_at > now:
            return campaign
        try:
            version = TemplateRepository().get_template(
                campaign.store, campaign.template_key, campaign.channel, campaign.locale
            )
        except NotFound as exc:
            campaign.state, campaign.paused_at = State.PAUSED, now
            campaign.last_error = f"{exc.message}: publish it, then resume"[:500]
            campaign.save(update_fields=["state", "paused_at", "last_error", "updated_at"])
            return campaign
        campaign.template = version
        campaign.state, campaign.started_at, campaign.progress_at, campaign.last_error = State.RUNNING, now, now, ""
        campaign.save(update_fields=["template", "state", "started_at", "progress_at", "last_error", "updated_at"])
        if enqueue:
            _enqueue_materialise(campaign, now)
        return campaign


def pause_campaign(campaign: Campaign) -> Campaign:
    """Stop sending: queued messages become held (the dispatcher never claims them) and
    materialisation stops after its current batch."""
    with transaction.atomic(durable=True):
        locked = _locked(campaign.pk)
        if locked.state not in (State.SCHEDULED, State.RUNNING):
            raise CampaignStateError(f"campaign {locked.pk} is {locked.state}; only scheduled or running ones pause")
        locked.state, locked.paused_at = State.PAUSED, timezone.now()
        locked.save(update_fields=["state", "paused_at", "updated_at"])
        Message.objects.filter(store_id=locked.store_id, campaign_id=locked.pk, status=Status.QUEUED).update(
            status=Status.HELD
        )
        return locked


def halt_campaign(campaign_id: int, reason: str) -> Campaign:
    """Pause a campaign that cannot go on by itself (e.g. its audience no longer validates), saying why."""
    with transaction.atomic(durable=True):
        locked = _locked(campaign_id)
        if locked.state in (State.SCHEDULED, State.RUNNING):
            locked.state, locked.paused_at, locked.last_error = State.PAUSED, timezone.now(), reason[:500]
            locked.save(update_fields=["state", "paused_at", "last_error", "updated_at"])
            Message.objects.filter(store_id=locked.store_id, campaign_id=locked.pk, status=Status.QUEUED).update(
                status=Status.HELD
            )
        return locked


def resume_campaign(campaign: Campaign) -> Campaign:
    """Held messages are queued again (the same rows: nobody gets a second one) and
    materialisation continues from its cursor. A campaign paused before it started is scheduled again."""
    from storeloop.messaging.tasks import request_dispatch

    now = timezone.now()
    with transaction.atomic(durable=True):
        locked = _locked(campaign.pk)
        if locked.state != State.PAUSED:
            raise CampaignStateError(f"campaign {locked.pk} is {locked.state}; only paused campaigns resume")
        locked.state = State.RUNNING if locked.started_at else State.SCHEDULED
        locked.paused_at, locked.last_error, locked.progress_at = None, "", now
        locked.save(update_fields=["state", "paused_at", "last_error", "progress_at", "updated_at"])
        if locked.started_at:
            Message.objects.filter(store_id=locked.store_id, campaign_id=locked.pk, status=Status.HELD).update(
                status=Status.QUEUED
            )
            request_dispatch()
        if locked.materialised_at is None:
            _enqueue_materialise(locked, now)
        return locked


def cancel_campaign(campaign: Campaign) -> Campaign:
    """Nothing more goes out: queued and held messages are cancelled; sent ones stay sent."""
    with transaction.atomic(durable=True):
        locked = _locked(campaign.pk)
        if locked.state in (State.CANCELLED, State.COMPLETED):
            raise CampaignStateError(f"campaign {locked.pk} is already {locked.state}")
        locked.state, locked.finished_at = State.CANCELLED, timezone.now()
        locked.save(update_fields=["state", "finished_at", "updated_at"])
        Message.objects.filter(
            store_id=locked.store_id, campaign_id=locked.pk, status__in=[Status.QUEUED, Status.HELD]
        ).update(status=Status.CANCELLED, reason="campaign cancelled", claimed_until=None)
        return locked


def complete_finished_campaigns() -> int:
    """Running campaigns with every message materialised and none left to send are completed."""
    pending = Message.objects.filter(campaign_id=OuterRef("pk"), status__in=PENDING)
    return (
        Campaign.objects.filter(state=State.RUNNING, materialised_at__isnull=False)
        .filter(~Exists(pending))
        .update(state=State.COMPLETED, finished_at=timezone.now())
    )


def advance_campaigns() -> dict[str, int]:
    """The scheduler's tick: start due campaigns, revive stalled materialisations, complete
    finished ones. Cheap when there is nothing to do (indexed reads)."""
    now = timezone.now()
    due = list(Campaign.objects.filter(state=State.SCHEDULED, starts_at__lte=now).values_list("pk", flat=True))
    started = 0
    for campaign_id in due:
        if start_campaign(campaign_id, enqueue=True).state == State.RUNNING:
            started += 1
    stalled = Campaign.objects.filter(
        state=State.RUNNING, materialised_at__isnull=True, progress_at__lt=now - STALLED_AFTER
    )
    revived = 0
    for campaign in stalled:
        with transaction.atomic(durable=True):
            # Touching progress_at keeps the next ticks from queueing it again while this one waits.
            if Campaign.objects.filter(pk=campaign.pk, progress_at=campaign.progress_at).update(progress_at=now):
                _enqueue_materialise(campaign, now)
                revived += 1
    return {"started": started, "revived": revived, "completed": complete_finished_campaigns()}
