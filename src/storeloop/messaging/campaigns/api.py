"""``/api/v1/campaigns``: create, list, show with live figures, preview an audience, and the
schedule / pause / resume / cancel transitions. Every route is scoped to the key's store."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from storeloop.config.auth import request_store
from storeloop.messaging.campaigns.schemas import CampaignIn, CampaignOut, PreviewIn, PreviewOut, ScheduleIn
from storeloop.messaging.campaigns.selectors import campaign_get_for_store, campaign_list
from storeloop.messaging.manager import MessagingManager

router = Router(tags=["campaigns"])


def _detail(campaign_id: int, request: HttpRequest) -> CampaignOut:
    campaign = campaign_get_for_store(store=request_store(request), campaign_id=campaign_id)
    return CampaignOut.of(campaign, MessagingManager().campaign_figures(campaign))


@router.post("", response={201: CampaignOut}, summary="Create a draft campaign (audience and template checked)")
def create(request: HttpRequest, payload: CampaignIn) -> Status[CampaignOut]:
    campaign = MessagingManager().create_campaign(
        request_store(request), name=payload.name, template_key=payload.template_key, channel=payload.channel,
        audience=payload.audience, purpose=payload.purpose, locale=payload.locale, custom=payload.custom,
        created_by=f"api:{request.auth.prefix}",  # type: ignore[attr-defined]
    )  # fmt: skip
    return Status(201, CampaignOut.of(campaign))


@router.get("", response=list[CampaignOut], summary="This store's campaigns, newest first")
def list_campaigns(
    request: HttpRequest, state: str | None = None, limit: int = 50, offset: int = 0
) -> list[CampaignOut]:
    campaigns = campaign_list(store=request_store(request), state=state).select_related("template")
    limit = max(1, min(limit, 200))
    return [CampaignOut.of(c) for c in campaigns[max(offset, 0) : max(offset, 0) + limit]]


@router.post("/preview", response=PreviewOut, summary="Count an audience now (and how many consent allows)")
def preview(request: HttpRequest, payload: PreviewIn) -> PreviewOut:
    result = MessagingManager().preview_audience(request_store(request), payload.audience, payload.channel,
                                                 payload.purpose)  # fmt: skip
    return PreviewOut.of(result)


@router.get("/{campaign_id}", response=CampaignOut, summary="One campaign with live figures")
def get(request: HttpRequest, campaign_id: int) -> CampaignOut:
    return _detail(campaign_id, request)


@router.post("/{campaign_id}/schedule", response=CampaignOut, summary="Send at a time (or at a local time)")
def schedule(request: HttpRequest, campaign_id: int, payload: ScheduleIn) -> CampaignOut:
    campaign = campaign_get_for_store(store=request_store(request), campaign_id=campaign_id)
    MessagingManager().schedule_campaign(campaign, payload.at, local_time=payload.local_time)
    return _detail(campaign_id, request)


@router.post("/{campaign_id}/send", response=CampaignOut, summary="Send a draft campaign now")
def send_now(request: HttpRequest, campaign_id: int) -> CampaignOut:
    campaign = campaign_get_for_store(store=request_store(request), campaign_id=campaign_id)
    MessagingManager().send_campaign_now(campaign)
    return _detail(campaign_id, request)


@router.post("/{campaign_id}/pause", response=CampaignOut, summary="Hold what is queued; stop materialising")
def pause(request: HttpRequest, campaign_id: int) -> CampaignOut:
    MessagingManager().pause_campaign(campaign_get_for_store(store=request_store(request), campaign_id=campaign_id))
    return _detail(campaign_id, request)


@router.post("/{campaign_id}/resume", response=CampaignOut, summary="Send what was held and continue")
def resume(request: HttpRequest, campaign_id: int) -> CampaignOut:
    MessagingManager().resume_campaign(campaign_get_for_store(store=request_store(request), campaign_id=campaign_id))
    return _detail(campaign_id, request)


@router.post("/{campaign_id}/cancel", response=CampaignOut, summary="Cancel everything not sent yet")
def cancel(request: HttpRequest, campaign_id: int) -> CampaignOut:
    MessagingManager().cancel_campaign(campaign_get_for_store(store=request_store(request), campaign_id=campaign_id))
    return _detail(campaign_id, request)
