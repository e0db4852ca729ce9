"""``storeloop campaign create|list|show|preview|schedule|pause|resume|cancel|send``."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from storeloop.cli.output import console, print_json, print_table

CHANNELS = ["email", "sms", "whatsapp"]
PURPOSES = ["marketing", "transactional"]
POLL_SECONDS = 0.5


def register(sub: Any) -> None:
    campaign = sub.add_parser("campaign", help="send a template to an audience: create, schedule, follow, pause")
    csub = campaign.add_subparsers(dest="campaign_command", metavar="<action>", required=True)

    create = csub.add_parser("create", help="create a draft campaign (the template must be published)")
    create.add_argument("--store", type=int, required=True, help="store id")
    create.add_argument("--name", required=True)
    create.add_argument("--template", required=True, help="template key")
    create.add_argument("--channel", choices=CHANNELS, required=True)
    create.add_argument("--locale", default="en")
    create.add_argument("--purpose", choices=PURPOSES, default="marketing")
    _audience_arguments(create)
    create.add_argument("--custom", help='JSON object templates see as {{ custom.* }}, e.g. \'{"code": "SPRING"}\'')
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=_create)

    listing = csub.add_parser("list", help="campaigns, newest first")
    listing.add_argument("--store", type=int)
    listing.add_argument("--state", choices=["draft", "scheduled", "running", "paused", "cancelled", "completed"])
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    show = csub.add_parser("show", help="a campaign and its live figures")
    show.add_argument("--campaign", type=int, required=True)
    show.add_argument("--json", action="store_true")
    show.add_argument("--follow", action="store_true", help="show a live progress bar until it is done")
    show.set_defaults(handler=_show)

    preview = csub.add_parser("preview", help="count an audience (and, with --channel, who consent allows)")
    preview.add_argument("--store", type=int, required=True)
    _audience_arguments(preview)
    preview.add_argument("--channel", choices=CHANNELS)
    preview.add_argument("--purpose", choices=PURPOSES, default="marketing")
    preview.add_argument("--json", action="store_true")
    preview.set_defaults(handler=_preview)

    schedule = csub.add_parser("schedule", help="send at a time, or at a wall-clock time in each recipient's zone")
    schedule.add_argument("--campaign", type=int, required=True)
    schedule.add_argument("--at", required=True, help="ISO 8601 with offset, e.g. 2026-06-01T10:00:00+02:00")
    schedule.add_argument("--local-time", action="store_true",
                          help="--at is a wall-clock time (no offset) in each recipient's time zone")  # fmt: skip
    schedule.set_defaults(handler=_schedule)

    for action, text in [("pause", "hold queued messages and stop materialising"),
                         ("resume", "send held messages and continue"),
                         ("cancel", "cancel every message not sent yet")]:  # fmt: skip
        parser = csub.add_parser(action, help=text)
        parser.add_argument("--campaign", type=int, required=True)
        parser.set_defaults(handler=_transition, action=action)

    send = csub.add_parser("send", help="send a draft campaign now and follow it with a progress bar")
    send.add_argument("--campaign", type=int, required=True)
    here = "materialise and send in this process (as a worker would) instead of waiting for the workers"
    send.add_argument("--here", action="store_true", help=here)
    send.add_argument("--no-follow", action="store_true", help="start it and return")
    send.set_defaults(handler=_send)


def _audience_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--audience", help='condition as JSON, e.g. \'{"all": [{"field": "country", "op": "eq", '
                       '"value": "DE"}]}\' (docs/campaigns.md)')  # fmt: skip
    group.add_argument("--audience-file", type=Path, help="the condition in a JSON file")


def _json_argument(text: str | None, name: str) -> Any:
    from storeloop.core.errors import ValidationError

    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"--{name} is not valid JSON: {exc}", code="invalid_json") from None


def _audience(args: argparse.Namespace) -> Any:
    from storeloop.core.errors import ValidationError

    if args.audience_file is not None:
        try:
            text = args.audience_file.read_text()
        except OSError as exc:
            raise ValidationError(f"cannot read {args.audience_file}: {exc.strerror}", code="invalid_file") from None
        return _json_argument(text, "audience-file")
    return _json_argument(args.audience, "audience")


def _store(store_id: int) -> Any:
    from storeloop.core.errors import NotFound
    from storeloop.stores.models import Store

    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        raise NotFound(f"no store {store_id}", code="store_not_found")
    return store


def _campaign(campaign_id: int) -> Any:
    from storeloop.messaging.campaigns.errors import CampaignNotFound
    from storeloop.messaging.campaigns.models import Campaign

    campaign = Campaign.objects.select_related("store", "template").filter(pk=campaign_id).first()
    if campaign is None:
        raise CampaignNotFound(f"no campaign {campaign_id}")
    return campaign


def _as_dict(campaign: Any, figures: Any = None) -> dict[str, Any]:
    data = {
        "id": campaign.pk, "store_id": campaign.store_id, "name": campaign.name, "state": campaign.state,
        "channel": campaign.channel, "purpose": campaign.purpose, "template_key": campaign.template_key,
        "locale": campaign.locale, "audience": campaign.audience, "scheduled_at": campaign.scheduled_at,
        "local_time": campaign.local_time, "started_at": campaign.started_at, "finished_at": campaign.finished_at,
        "last_error": campaign.last_error,
    }  # fmt: skip
    if figures is not None:
        data["figures"] = figures.as_dict()
    return data


def _create(args: argparse.Namespace) -> int:
    from storeloop.messaging.manager import MessagingManager

    campaign = MessagingManager().create_campaign(
        _store(args.store), name=args.name, template_key=args.template, channel=args.channel, audience=_audience(args),
        purpose=args.purpose, locale=args.locale, custom=_json_argument(args.custom, "custom"), created_by="cli",
    )  # fmt: skip
    if args.json:
        print_json(_as_dict(campaign))
    else:
        console.print(f"Campaign [bold]{campaign.pk}[/bold] created as a draft. Send it with: "
                      f"storeloop campaign send --campaign {campaign.pk}")  # fmt: skip
    return 0


def _list(args: argparse.Namespace) -> int:
    from storeloop.messaging.campaigns.selectors import campaign_list

    campaigns = list(campaign_list(store=_store(args.store) if args.store else None, state=args.state)[:200])
    if args.json:
        print_json([_as_dict(c) for c in campaigns])
        return 0
    print_table(
        "Campaigns",
        ["id", "store", "name", "channel", "state", "scheduled", "targeted"],
        [(c.pk, c.store_id, c.name, c.channel, c.state, c.scheduled_at, c.targeted) for c in campaigns],
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    from storeloop.messaging.manager import MessagingManager

    campaign = _campaign(args.campaign)
    if args.follow:
        return _follow(campaign.pk, here=False)
    figures = MessagingManager().campaign_figures(campaign)
    if args.json:
        print_json(_as_dict(campaign, figures))
        return 0
    when = f", scheduled {campaign.scheduled_at:%Y-%m-%d %H:%M}" if campaign.scheduled_at else ""
    local = " local time" if campaign.local_time else (" UTC" if campaign.scheduled_at else "")
    console.print(f"Campaign {campaign.pk} [bold]{campaign.name}[/bold] ({campaign.channel}, {campaign.purpose}): "
                  f"{campaign.state}{when}{local}")  # fmt: skip
    if campaign.last_error:
        console.print(f"[yellow]{campaign.last_error}[/yellow]")
    print_table("Figures", ["figure", "count"], list(figures.as_dict().items()))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from storeloop.messaging.manager import MessagingManager

    result = MessagingManager().preview_audience(_store(args.store), _audience(args), args.channel, args.purpose)
    if args.json:
        print_json({"audience": result.audience, "eligible": result.eligible})
    elif result.eligible is None:
        console.print(f"{result.audience} contacts in the audience.")
    else:
        console.print(f"{result.audience} contacts in the audience; consent allows {result.eligible} on "
                      f"{args.channel} ({args.purpose}) now.")  # fmt: skip
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from storeloop.core.errors import ValidationError
    from storeloop.messaging.manager import MessagingManager

    try:
        at = dt.datetime.fromisoformat(args.at)
    except ValueError:
        raise ValidationError(f"--at {args.at!r} is not an ISO 8601 time", code="invalid_datetime") from None
    campaign = MessagingManager().schedule_campaign(_campaign(args.campaign), at, local_time=args.local_time)
    zone = "in each recipient's time zone" if campaign.local_time else "UTC"
    console.print(f"Campaign {campaign.pk} scheduled for {campaign.scheduled_at:%Y-%m-%d %H:%M} {zone}.")
    return 0


def _transition(args: argparse.Namespace) -> int:
    from storeloop.messaging.manager import MessagingManager

    manager = MessagingManager()
    action = {"pause": manager.pause_campaign, "resume": manager.resume_campaign, "cancel": manager.cancel_campaign}
    campaign = action[args.action](_campaign(args.campaign))
    console.print(f"Campaign {campaign.pk} is {campaign.state}.")
    return 0


def _send(args: argparse.Namespace) -> int:
    from storeloop.messaging.manager import MessagingManager

    campaign = _campaign(args.campaign)
    MessagingManager().send_campaign_now(campaign)
    if args.no_follow:
        console.print(f"Campaign {campaign.pk} started; follow it with: storeloop campaign show --campaign "
                      f"{campaign.pk} --follow")  # fmt: skip
        return 0
    return _follow(campaign.pk, here=args.here)


def _work_here(campaign_id: int) -> bool:
    """One step of materialising and sending in this process; False when nothing is due now."""
    from django.db.models import Q
    from django.utils import timezone

    from storeloop.messaging.campaigns.models import Campaign
    from storeloop.messaging.manager import MessagingManager
    from storeloop.messaging.models import Message

    manager = MessagingManager()
    campaign = Campaign.objects.get(pk=campaign_id)
    materialised = None
    if campaign.state in (Campaign.State.SCHEDULED, Campaign.State.RUNNING) and campaign.materialised_at is None:
        materialised = manager.materialise_campaign(campaign_id, budget_seconds=1.0, queue_continuation=False)
    sent = manager.dispatch_due(budget_seconds=1.0)
    due = Message.objects.filter(Q(not_before__lte=timezone.now()), campaign_id=campaign_id, status="queued")
    return bool(sent) or bool(materialised and materialised.batches) or due.exists()


def _follow(campaign_id: int, *, here: bool) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from storeloop.messaging.campaigns.models import Campaign
    from storeloop.messaging.manager import MessagingManager

    manager = MessagingManager()
    interrupted = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, stop)
    waiting = False
    try:
        with Progress(
            TextColumn("[bold]campaign {task.fields[campaign]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            bar = progress.add_task("send", total=1, campaign=campaign_id, detail="")
            while True:
                campaign = Campaign.objects.get(pk=campaign_id)
                figures = manager.campaign_figures(campaign)
                detail = (f"sent {figures.sent} delivered {figures.delivered} failed {figures.failed} "
                          f"suppressed {figures.suppressed} queued {figures.queued} held {figures.held}")  # fmt: skip
                progress.update(bar, completed=figures.done, total=max(figures.targeted, figures.done, 1),
                                detail=detail)  # fmt: skip
                if interrupted or campaign.state in (Campaign.State.COMPLETED, Campaign.State.CANCELLED,
                                                     Campaign.State.PAUSED):  # fmt: skip
                    break
                if not here:
                    time.sleep(POLL_SECONDS)
                elif not _work_here(campaign_id):
                    # Nothing more to do now: either it just finished (shown on the next pass) or the
                    # rest waits for later (quiet hours, caps, retries) and the workers take it from here.
                    state = Campaign.objects.values_list("state", flat=True).get(pk=campaign_id)
                    if state not in (Campaign.State.COMPLETED, Campaign.State.CANCELLED, Campaign.State.PAUSED):
                        waiting = True
                        break
    finally:
        signal.signal(signal.SIGINT, previous)
    campaign = Campaign.objects.get(pk=campaign_id)
    figures = manager.campaign_figures(campaign)
    console.print(f"Campaign {campaign_id} {campaign.state}: {figures.sent} sent, {figures.failed} failed, "
                  f"{figures.suppressed} suppressed, {figures.queued} queued, {figures.held} held.")  # fmt: skip
    if campaign.last_error:
        console.print(f"[yellow]{campaign.last_error}[/yellow]")
    if interrupted:
        console.print(f"Stopped following; the campaign goes on. Follow it again with: storeloop campaign show "
                      f"--campaign {campaign_id} --follow")  # fmt: skip
        return 130
    if waiting and campaign.state == Campaign.State.RUNNING:
        console.print(f"{figures.queued} message(s) wait for quiet hours, frequency caps or retries; "
                      "the workers send them when due.")  # fmt: skip
        return 0
    return 0 if campaign.state == Campaign.State.COMPLETED else 1
