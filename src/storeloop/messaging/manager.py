"""``MessagingManager``: the public face of messaging (design note 2C).

* ``send_templated_message`` — one message from a published template; the entry point automation
  rules call. Idempotent by ``dedupe_key``.
* ``send_bulk_message`` — a campaign to an audience, now; ``create_campaign`` +
  ``schedule_campaign`` (optionally at the recipient's local time) for later;
  ``pause_campaign``, ``resume_campaign``, ``cancel_campaign``; ``campaign_figures`` (live).
* ``materialise_campaign`` and ``dispatch_due`` — what the workers run (``messaging.tasks``).

Messages are durable rows the ``MessageDispatcher`` sends; the consent gate is asked again for
every message at send time, whatever was true when it was queued.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from storeloop.consent.models import Purpose
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.messaging.campaigns import selectors, services
from storeloop.messaging.campaigns.materialise import MaterialiseResult
from storeloop.messaging.campaigns.materialise import materialise_campaign as materialise
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.selectors import AudiencePreview, CampaignFigures
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.models import Message
from storeloop.messaging.templates import TemplateRepository
from storeloop.stores.models import Store

CAMPAIGN_KEY_PREFIX = "campaign:"
CONTEXT_KEYS = frozenset({"order_id", "custom"})


def _live(contact: Contact) -> Contact:
    """The contact a merged one was folded into (automation may hold an old id)."""
    hops = 0
    while contact.merged_into_id is not None and hops < 20:
        contact = Contact.objects.get(pk=contact.merged_into_id)
        hops += 1
    return contact


class MessagingManager:
    def __init__(
        self, *, dispatcher: MessageDispatcher | None = None, templates: TemplateRepository | None = None
    ) -> None:
        self.templates = templates or TemplateRepository()
        self._dispatcher = dispatcher

    @property
    def dispatcher(self) -> MessageDispatcher:
        if self._dispatcher is None:
            from storeloop.messaging.channels.factory import channel_for

            self._dispatcher = MessageDispatcher(channel_for, templates=self.templates)
        return self._dispatcher

    # --- one message -------------------------------------------------------------------------------

    def send_templated_message(
        self,
        store: Store,
        contact: Contact,
        template_key: str,
        channel: str,
        purpose: str,
        context: Mapping[str, Any] | None,
        dedupe_key: str,
        *,
        locale: str = "en",
        not_before: dt.datetime | None = None,
    ) -> Message:
        """Queue one message from the published template ``template_key`` and have it sent.

        ``context`` holds ids, not data: ``order_id`` (an order of this store) and ``custom``
        values. The same ``dedupe_key`` twice returns the first message (an automation retried,
        a double click). Joins the caller's transaction; the send starts after it commits.
        """
        from storeloop.messaging.tasks import request_dispatch
        from storeloop.orders.models import Order

        if not dedupe_key or len(dedupe_key) > 200:
            raise ValidationError("dedupe_key is required, at most 200 characters", code="invalid_dedupe_key")
        if dedupe_key.startswith(CAMPAIGN_KEY_PREFIX):
            raise ValidationError(f"dedupe keys starting with {CAMPAIGN_KEY_PREFIX!r} belong to campaigns",
                                  code="invalid_dedupe_key")  # fmt: skip
        values = dict(context or {})
        unknown = set(values) - CONTEXT_KEYS
        if unknown:
            raise ValidationError(
                f"context takes {sorted(CONTEXT_KEYS)}; not {sorted(unknown)}", code="invalid_context"
            )
        if "custom" in values and not isinstance(values["custom"], Mapping):
            raise ValidationError("context.custom is an object", code="invalid_context")
        order_id = values.get("order_id")
        if order_id is not None and (
            isinstance(order_id, bool)
            or not isinstance(order_id, int)
            or not Order.objects.filter(store=store, pk=order_id).exists()
        ):
            raise ValidationError(f"no order {order_id!r} in this store", code="order_not_found")
        version = self.templates.get_template(store, template_key, channel, locale)
        with transaction.atomic():
            message = self.dispatcher.queue_message(
                store=store, contact=_live(contact), channel=channel, purpose=purpose, template=version,
                dedupe_key=dedupe_key, context=values, not_before=not_before,
            )  # fmt: skip
            request_dispatch()
        return message

    # --- campaigns ---------------------------------------------------------------------------------

    def create_campaign(
        self,
        store: Store,
        *,
        name: str,
        template_key: str,
        channel: str,
        audience: Any,
        purpose: str = Purpose.MARKETING,
        locale: str = "en",
        custom: Mapping[str, Any] | None = None,
        created_by: str = "",
    ) -> Campaign:
        """A draft: the audience is validated and the template must be published."""
        return services.create_campaign(
            store, name=name, template_key=template_key, channel=channel, audience=audience, purpose=purpose,
            locale=locale, custom=custom, created_by=created_by,
        )  # fmt: skip

    def send_bulk_message(
        self,
        store: Store,
        *,
        template_key: str,
        channel: str,
        audience: Any,
        purpose: str = Purpose.MARKETING,
        locale: str = "en",
        name: str = "",
        custom: Mapping[str, Any] | None = None,
        created_by: str = "",
    ) -> Campaign:
        """Send a template to an audience now, as a campaign (figures, pause and cancel apply)."""
        now = timezone.now()
        with transaction.atomic(durable=True):
            campaign = services.build_campaign(
                store, name=name or f"{template_key} {now:%Y-%m-%d %H:%M}", template_key=template_key,
                channel=channel, audience=audience, purpose=purpose, locale=locale, custom=custom,
                created_by=created_by,
            )  # fmt: skip
            services.plan_schedule(campaign, now, local_time=False, now=now)
        return campaign

    def schedule_campaign(self, campaign: Campaign, at: dt.datetime, local_time: bool = False) -> Campaign:
        """Send at ``at``; with ``local_time``, at that wall-clock time in each recipient's zone
        (from their phone number, else their country, else UTC)."""
        return services.schedule_campaign(campaign, at, local_time=local_time)

    def send_campaign_now(self, campaign: Campaign) -> Campaign:
        """Start a draft (or scheduled) campaign now."""
        return services.schedule_campaign(campaign, timezone.now())

    def pause_campaign(self, campaign: Campaign) -> Campaign:
        return services.pause_campaign(campaign)

    def resume_campaign(self, campaign: Campaign) -> Campaign:
        return services.resume_campaign(campaign)

    def cancel_campaign(self, campaign: Campaign) -> Campaign:
        return services.cancel_campaign(campaign)

    def campaign_figures(self, campaign: Campaign) -> CampaignFigures:
        campaign.refresh_from_db(fields=["targeted", "excluded"])
        return selectors.campaign_figures(campaign)

    def preview_audience(
        self, store: Store, audience: Any, channel: str | None = None, purpose: str = Purpose.MARKETING
    ) -> AudiencePreview:
        return selectors.audience_preview(store=store, audience=audience, channel=channel, purpose=purpose)

    # --- worker side -------------------------------------------------------------------------------

    def materialise_campaign(self, campaign_id: int, **options: Any) -> MaterialiseResult:
        return materialise(campaign_id, **options)

    def dispatch_due(self, *, budget_seconds: float = 10.0, batch_size: int = 500) -> Counter[str]:
        """Send due messages batch by batch until none is due, the budget is spent or a campaign's
        materialisation waits for this worker (``drain_should_give_way``; then a continuation is
        queued); completes campaigns that have nothing left to send."""
        from storeloop.messaging.tasks import drain_should_give_way, request_dispatch

        def join_in() -> None:  # a backlog: an idle worker starts a drain of its own beside this one
            with transaction.atomic():
                request_dispatch()

        total, more = self.dispatcher.drain(
            budget_seconds=budget_seconds, batch_size=batch_size, on_backlog=join_in, give_way=drain_should_give_way
        )
        if more:
            with transaction.atomic():
                request_dispatch()
        services.complete_finished_campaigns()
        return total
