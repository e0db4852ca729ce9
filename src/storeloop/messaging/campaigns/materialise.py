"""Turning a running campaign's audience into ``Message`` rows, in resumable batches.

Each batch is one transaction that locks the campaign row, reads the next contacts of the
audience after the cursor (keyset by contact id, one query with the consent filter as a column),
bulk-inserts the eligible ones' messages and moves the cursor and counters. A worker killed
mid-batch loses only the uncommitted batch; the next run starts from the committed cursor. The
dedupe key ``campaign:<id>:<contact id>`` is unique per store, so even a run that somehow
repeated a batch would insert nothing twice (conflicts are ignored).

A run stops after ``budget_seconds`` and queues its own continuation, so a single worker
interleaves sending with a large materialisation instead of finishing it first.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, ExpressionWrapper
from django.utils import timezone

from storeloop.contacts.models import Contact
from storeloop.core.bulk import insert_rows, quoted_column
from storeloop.core.errors import ValidationError
from storeloop.messaging.campaigns.audience import compile_audience
from storeloop.messaging.campaigns.eligibility import eligible_q
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.services import halt_campaign, start_campaign
from storeloop.messaging.dispatcher import PRIORITY
from storeloop.messaging.models import Message
from storeloop.messaging.policies import zone_for

logger = logging.getLogger("storeloop.campaigns")
State = Campaign.State
BATCH_SIZE = 1000
BUDGET_SECONDS = 10.0


@dataclass(frozen=True)
class MaterialiseResult:
    campaign_id: int
    state: str
    batches: int
    messages: int
    materialised: bool
    continued: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _not_before(campaign: Campaign, phone: str, country: str, now: dt.datetime) -> dt.datetime:
    if not campaign.local_time or campaign.scheduled_at is None:
        return now
    # scheduled_at holds the wall-clock time; put it in the recipient's zone.
    wall = campaign.scheduled_at.replace(tzinfo=None)
    local = wall.replace(tzinfo=zone_for(phone, country)).astimezone(dt.UTC)
    return max(local, now)


# Every NOT NULL column of Message, in the order _insert builds rows (nullable ones stay NULL).
COLUMNS = (
    "store_id", "contact_id", "channel", "purpose", "template_id", "context", "dedupe_key", "idempotency_key",
    "campaign_id", "priority", "status", "not_before", "attempts", "provider", "provider_message_id", "last_error",
    "reason", "created_at",
)  # fmt: skip


def _insert(campaign: Campaign, recipients: list[tuple[int, dt.datetime]], now: dt.datetime) -> None:
    """One prepared multi-row INSERT (``core.bulk``): Django's ``bulk_create`` spends most of a large
    campaign's materialisation preparing values. Should a row conflict anyway (its dedupe key is
    taken), the batch falls back to ``bulk_create`` ignoring conflicts, inside a savepoint."""
    context = {"custom": campaign.custom} if campaign.custom else {}
    priority = PRIORITY[campaign.purpose]  # type: ignore[index]
    rows = [
        (campaign.store_id, contact_id, campaign.channel, campaign.purpose, campaign.template_id, context,
         f"campaign:{campaign.pk}:{contact_id}", uuid.uuid4(), campaign.pk,
         priority, Message.Status.QUEUED, not_before, 0, "", "", "", "", now)
        for contact_id, not_before in recipients
    ]  # fmt: skip
    try:
        with transaction.atomic():
            insert_rows(Message, COLUMNS, rows)
    except IntegrityError:
        logger.warning("campaign %s: a batch met existing messages; inserting it skipping those", campaign.pk)
        Message.objects.bulk_create([Message(**dict(zip(COLUMNS, row, strict=True))) for row in rows],
                                    ignore_conflicts=True)  # fmt: skip


# A random (version 4) UUID per row, written as Django keeps UUIDs: 32 hex digits on SQLite, the
# native type on PostgreSQL. ("%%" is a literal "%" in a statement with parameters.)
_NEW_KEY = {
    "sqlite": "lower(hex(randomblob(4)) || hex(randomblob(2)) || '4' || substr(hex(randomblob(2)), 2)"
    " || substr('89AB', 1 + abs(random() %% 4), 1) || substr(hex(randomblob(2)), 2) || hex(randomblob(6)))",
    "postgresql": "gen_random_uuid()",
}


def _insert_selected(campaign: Campaign, contact_ids: list[int], now: dt.datetime) -> None:
    """The messages of the chosen contacts in one ``INSERT … SELECT``: every value but the contact
    and the keys is the campaign's, so nothing is built per row in Python (a third of the CPU of
    materialising went into building and converting row tuples). A message that exists already
    (a repeated batch) is skipped by its unique dedupe key."""
    table, contacts = (connection.ops.quote_name(m._meta.db_table) for m in (Message, Contact))
    columns = ", ".join(quoted_column(Message, name) for name in COLUMNS)
    when = connection.ops.adapt_datetimefield_value(now)
    context = orjson.dumps({"custom": campaign.custom} if campaign.custom else {}).decode()
    ids = ", ".join(str(int(pk)) for pk in contact_ids)
    json = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT %s, c.id, %s, %s, %s, {json}, "  # noqa: S608
        f"%s || c.id, {_NEW_KEY[connection.vendor]}, %s, %s, %s, %s, 0, '', '', '', '', %s "
        f"FROM {contacts} c WHERE c.id IN ({ids}) ON CONFLICT DO NOTHING"
    )
    params: list[Any] = [campaign.store_id, campaign.channel, campaign.purpose, campaign.template_id, context,
              f"campaign:{campaign.pk}:", campaign.pk, PRIORITY[campaign.purpose], Message.Status.QUEUED,  # type: ignore[index]
              when, when]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _batch(campaign: Campaign, size: int, now: dt.datetime) -> int:
    """Materialise the next batch of a locked running campaign; returns how many messages."""
    audience = compile_audience(campaign.store_id, campaign.audience, now=campaign.started_at or now)
    eligible = ExpressionWrapper(eligible_q(campaign.channel, campaign.purpose, now), output_field=BooleanField())
    rows = list(
        audience.filter(pk__gt=campaign.cursor)
        .order_by("pk")
        .annotate(eligible=eligible)
        .values_list("pk", "phone", "country", "eligible")[:size]
    )
    recipients = [(pk, phone, country) for pk, phone, country, ok in rows if ok]
    if recipients and campaign.local_time and campaign.scheduled_at is not None:
        # Due at the scheduled wall-clock time in each recipient's own zone: worked out per row.
        _insert(campaign, [(pk, _not_before(campaign, phone, country, now)) for pk, phone, country in recipients], now)
    elif recipients:
        _insert_selected(campaign, [pk for pk, _, _ in recipients], now)
    fields = ["progress_at", "updated_at"]
    campaign.progress_at = now
    if rows:
        campaign.cursor = rows[-1][0]
        campaign.targeted += len(rows)
        campaign.excluded += len(rows) - len(recipients)
        fields += ["cursor", "targeted", "excluded"]
    if len(rows) < size:
        campaign.materialised_at = now
        fields.append("materialised_at")
    campaign.save(update_fields=fields)
    return len(recipients)


def materialise_campaign(
    campaign_id: int,
    *,
    batch_size: int = BATCH_SIZE,
    budget_seconds: float = BUDGET_SECONDS,
    should_stop: Callable[[], bool] | None = None,
    queue_continuation: bool = True,
    min_messages: int = 0,
) -> MaterialiseResult:
    """Start the campaign if it is due, then insert its messages batch by batch.

    Safe to run twice or concurrently (batches serialise on the campaign row). Stops when the
    audience is exhausted, the campaign is no longer running (paused, cancelled), ``should_stop``
    says so, or the time budget is spent once ``min_messages`` were inserted (batches of people
    the campaign leaves out insert none) — then a continuation task is queued (unless the caller
    drives the loop itself: ``queue_continuation=False``).
    """
    from storeloop.core.tasks import enqueue_on_commit
    from storeloop.messaging.tasks import CONTINUATION, request_dispatch
    from storeloop.messaging.tasks import materialise_campaign as materialise_task

    campaign = start_campaign(campaign_id)
    deadline = time.monotonic() + budget_seconds
    batches = inserted = 0
    continued = False
    while True:
        try:
            with transaction.atomic(durable=True):
                campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
                if campaign.state != State.RUNNING or campaign.materialised_at is not None:
                    break
                count = _batch(campaign, batch_size, timezone.now())
                batches, inserted = batches + 1, inserted + count
                if count:
                    request_dispatch()
        except ValidationError as exc:
            # The stored audience no longer validates (e.g. a segment was renamed): retrying cannot
            # help, so the campaign pauses and says why; fix it with a new campaign.
            campaign = halt_campaign(campaign_id, f"cannot materialise: {exc.message}")
            break
        if campaign.materialised_at is not None or (should_stop is not None and should_stop()):
            break
        if time.monotonic() > deadline and inserted >= min_messages:
            if queue_continuation:
                with transaction.atomic(durable=True):
                    enqueue_on_commit(materialise_task, str(campaign_id), CONTINUATION)
                continued = True
            break
    return MaterialiseResult(
        campaign_id=campaign_id, state=campaign.state, batches=batches, messages=inserted,
        materialised=campaign.materialised_at is not None, continued=continued,
    )  # fmt: skip
