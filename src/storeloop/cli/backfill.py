"""``storeloop backfill start|status|pause|resume|cancel``."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
from types import FrameType
from typing import Any

from storeloop.cli.output import console, print_json


def register(sub: Any) -> None:
    bf = sub.add_parser("backfill", help="import a shop's historical orders (resumable)")
    bsub = bf.add_subparsers(dest="backfill_command", metavar="<action>", required=True)

    start = bsub.add_parser("start", help="start a backfill and follow it with a progress bar")
    start.add_argument("--store", type=int, required=True, help="store id")
    start.add_argument("--since", type=_date, help="only orders modified after this date (YYYY-MM-DD or ISO 8601)")
    start.add_argument("--parallel", type=int, default=3, help="page fetches at once (default 3; be kind to the shop)")
    start.add_argument("--sync-to-crm", action="store_true", help="sync the imported orders to the CRM afterwards")
    start.add_argument("--background", action="store_true", help="hand it to the workers instead of running here")
    start.set_defaults(handler=_start)

    status = bsub.add_parser("status", help="state, progress, rate, ETA and errors")
    status.add_argument("--job", type=int, help="job id (default: the store's latest)")
    status.add_argument("--store", type=int)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    for name, text in [("pause", "pause a running backfill"), ("cancel", "cancel a backfill")]:
        p = bsub.add_parser(name, help=text)
        p.add_argument("--job", type=int, required=True)
        p.set_defaults(handler=_transition, action=name)

    resume = bsub.add_parser("resume", help="resume a paused, failed or interrupted backfill")
    resume.add_argument("--job", type=int, required=True)
    resume.add_argument("--parallel", type=int, default=3)
    resume.add_argument("--background", action="store_true")
    resume.set_defaults(handler=_resume)


def _date(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD or ISO 8601)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _start(args: argparse.Namespace) -> int:
    from storeloop.backfill.services import OrderBackfillManager

    manager = OrderBackfillManager(parallel=args.parallel)
    job = manager.start_backfill(args.store, args.since, sync_to_crm=args.sync_to_crm)
    console.print(f"Backfill [bold]{job.pk}[/bold] of store {args.store}: {job.total} orders to import.")
    return _follow(manager, job.pk, background=args.background)


def _resume(args: argparse.Namespace) -> int:
    from storeloop.backfill.models import BackfillJob
    from storeloop.backfill.services import OrderBackfillManager

    manager = OrderBackfillManager(parallel=args.parallel)
    state = BackfillJob.objects.filter(pk=args.job).values_list("state", flat=True).first()
    if state in ("paused", "failed"):
        manager.resume(args.job)
    return _follow(manager, args.job, background=args.background)


def _follow(manager: Any, job_id: int, *, background: bool) -> int:
    from django.db import transaction
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from storeloop.backfill.tasks import run_backfill
    from storeloop.core.tasks import enqueue_on_commit

    if background:
        with transaction.atomic():
            enqueue_on_commit(run_backfill, str(job_id))
        console.print(f"Queued for the workers. Follow it with: storeloop backfill status --job {job_id}")
        return 0
    interrupted = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = manager.get_job_status(job_id)
    try:
        with Progress(
            TextColumn("[bold]backfill {task.fields[job]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} orders/s"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            bar = progress.add_task("import", total=max(status.total, 1), completed=status.done, job=job_id, rate="-")

            def show(current: Any) -> None:
                rate = f"{current.rate_per_s:,.0f}" if current.rate_per_s else "-"
                progress.update(bar, completed=current.done, total=max(current.total, current.done, 1), rate=rate)

            status = manager.run(job_id, should_stop=lambda: interrupted, on_progress=show)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted and status.state in ("running", "pending"):
        status = manager.pause(job_id)
        console.print(f"Paused at {status.done} orders. Resume with: storeloop backfill resume --job {job_id}")
        return 130
    console.print(f"Backfill {job_id} {status.state}: {status.done} orders, outcomes {status.outcomes}.")
    if status.errors:
        console.print(f"[yellow]{status.errors} failed page fetches (retried); last: {status.last_error}[/yellow]")
    return 0 if status.state == "completed" else 1


def _status(args: argparse.Namespace) -> int:
    from storeloop.backfill.models import BackfillJob
    from storeloop.backfill.services import OrderBackfillManager

    job_id = args.job
    if job_id is None:
        qs = BackfillJob.objects.order_by("-id")
        if args.store:
            qs = qs.filter(store_id=args.store)
        job_id = qs.values_list("pk", flat=True).first()
        if job_id is None:
            console.print("No backfills yet.")
            return 1
    status = OrderBackfillManager().get_job_status(job_id)
    if args.json:
        print_json(status.__dict__)
        return 0
    rate = f"{status.rate_per_s:,.0f}/s" if status.rate_per_s else "-"
    eta = f"{status.eta_seconds:,.0f}s" if status.eta_seconds is not None else "-"
    console.print(
        f"Backfill {status.id} (store {status.store_id}): {status.state}, {status.done}/{status.total} orders, "
        f"rate {rate}, ETA {eta}, errors {status.errors}"
    )
    return 0


def _transition(args: argparse.Namespace) -> int:
    from storeloop.backfill.services import OrderBackfillManager

    manager = OrderBackfillManager()
    status = manager.pause(args.job) if args.action == "pause" else manager.cancel(args.job)
    console.print(f"Backfill {status.id} is {status.state}.")
    return 0
