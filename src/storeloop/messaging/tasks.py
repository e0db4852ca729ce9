"""Messaging's background work: materialising campaigns and draining the dispatch queue.

Sending is driven by ``dispatch_messages``, a drain (``MessageDispatcher.drain``) that sends batch
after batch until nothing is due, its time budget is spent or, beside another drain, a campaign's
materialisation waits for a worker (then it queues its continuation, so other work gets a worker
in between). A drain that finds more due than one batch queues another,
so an idle worker joins it at once. Whoever queues messages calls ``request_dispatch`` in the same
transaction; the scheduler's ``kick_dispatch`` is the backstop for messages that become due
later (schedules, back-offs, quiet hours, caps) or a drain that was missed.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.core.tasks import durable_task, enqueue_on_commit
from storeloop.messaging.models import Message

DISPATCH_BUDGET_SECONDS = 10.0


CONTINUATION = "continuation"  # materialise_campaign's second argument on the runs it queues itself


@durable_task(queue="default", max_attempts=10, retry_base_seconds=5, retry_max_seconds=300)
def materialise_campaign(campaign_id: str, run: str = "start") -> dict[str, object]:
    """Start a due campaign and insert its messages. Safe to run twice: batches resume from the
    committed cursor and every message has a unique dedupe key.

    A starting run inserts batches until one had messages in it (people the campaign leaves out
    insert none) and queues the rest (a ``CONTINUATION`` run) behind the drain they asked for, so
    the first messages go out while the rest of the audience is inserted: an idle worker starts
    sending instead of waiting for the whole audience (two campaigns started together used to keep
    both workers inserting for seconds before anything was sent). Whether a run starts is its
    argument, not the campaign's progress: the timed start, the scheduler's tick and a revival may
    each queue a starting run, and none of them may insert the whole audience ahead of the drain.
    A drain running beside another gives way to a waiting continuation (``drain_should_give_way``)."""
    from storeloop.messaging.manager import MessagingManager

    options = {} if run == CONTINUATION else {"budget_seconds": 0.0, "min_messages": 1}
    return MessagingManager().materialise_campaign(int(campaign_id), **options).as_dict()


@durable_task(queue="default", max_attempts=2)
def dispatch_messages() -> dict[str, int]:
    """Send what is due, batch after batch, for at most ``DISPATCH_BUDGET_SECONDS``. Safe to run
    twice or in parallel: messages are claimed under a lease."""
    from storeloop.messaging.manager import MessagingManager

    return dict(MessagingManager().dispatch_due(budget_seconds=DISPATCH_BUDGET_SECONDS))


@durable_task(queue="default", max_attempts=3)
def send_message(message_id: str) -> str:
    """Send one queued message on its own (a one-off transactional send that should not wait for
    the next drain). Campaigns never use this: one task per message is several times slower than
    the batched drain (bench/dispatch.py measures both)."""
    from storeloop.messaging.channels.factory import channel_for
    from storeloop.messaging.dispatcher import MessageDispatcher

    return MessageDispatcher(channel_for).send_immediate(int(message_id))


@durable_task(queue="maintenance", max_attempts=3)
def reap_stuck_messages() -> int:
    """Messages left ``sending`` by a dead worker become ``unknown`` (never resent)."""
    from storeloop.messaging.dispatcher import reap_stuck_sends

    return reap_stuck_sends()


@durable_task(queue="maintenance", max_attempts=3)
def settle_unknown_messages() -> dict[str, int]:
    """Ask providers that can tell (Twilio) about ``unknown`` sends: sent, or queued again."""
    from storeloop.messaging.channels.factory import channel_for
    from storeloop.messaging.settlement import settle_unknown_sends

    return dict(settle_unknown_sends(channel_for))


def drain_should_give_way() -> bool:
    """Should a drain stop for a campaign's materialisation waiting for a worker? Only while
    another drain runs: sending goes on, and the audience's messages reach the queue instead of
    waiting behind drains that keep every worker busy while anything is due."""
    if not DBTaskResult.objects.ready().filter(task_path=materialise_campaign.module_path).exists():
        return False
    running = DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING, task_path=dispatch_messages.module_path)
    return bool(running.count() > 1)


def _dispatch_waiting() -> bool:
    return bool(DBTaskResult.objects.ready().filter(task_path=dispatch_messages.module_path).exists())


def request_dispatch() -> None:
    """Queue a drain when the caller's transaction commits, unless one is already waiting to run
    (it will see the caller's messages: it has not claimed anything yet). Call inside a transaction."""
    if not _dispatch_waiting():
        enqueue_on_commit(dispatch_messages)


def kick_dispatch() -> bool:
    """The scheduler's backstop: queue a drain when messages are due and none is waiting."""
    due = Message.objects.filter(status=Message.Status.QUEUED, not_before__lte=timezone.now())
    if not due.exists() or _dispatch_waiting():
        return False
    with transaction.atomic():
        enqueue_on_commit(dispatch_messages)
    return True


def advance_campaigns() -> dict[str, int]:
    """The scheduler's campaign tick: start due ones, revive stalled ones, complete finished ones."""
    from storeloop.messaging.campaigns.services import advance_campaigns as advance

    return advance()
