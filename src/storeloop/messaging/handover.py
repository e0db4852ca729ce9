"""Handing a batch to the providers group by group, so a worker's death costs little.

The dispatcher records every attempt (``sending``) before any provider call. Without more, a
worker killed mid-batch leaves the whole batch ``sending``, and since nobody can tell which of its
messages a provider took (an SMTP relay cannot be asked), all of them end ``unknown``: most never
sent, none sent again. So each sending thread goes through its part ``HANDOVER_GROUP`` messages
at a time, and a group reaches the provider only once a journal entry (``HandOver``) names it;
the same entry lists the sends the provider accepted of the group before. (Where the provider
can be asked what it took, Twilio, one entry for the whole part is enough: the settlement asks.)
The batch's outcomes are still written in one transaction at its end, which deletes its entries.
The reaper reads what a dead worker left (``reap_stuck_sends``): accepted → ``sent``, handed
over → ``unknown``, neither → queued again.

Why a journal and not a column on the messages: an entry is one appended row (~0.16 ms per
commit on SQLite, its check of the group included), where marking or recording 20 message rows
rewrites their pages and indexes (~0.7 ms).

The writes do not stall the sends: while a group is with the provider, the ``Recorder`` commits the
entry for the next one, together with whatever other sending threads asked for meanwhile (a group
commit). What a killed worker leaves ``unknown`` per sending thread: the group being sent, the
next one (already named) and, if its entry had not landed, the accepted sends of the group before.

The entry's transaction first reads the group's rows (locking them on PostgreSQL, as the reaper
does): a row the reaper took back from a worker that overran its claim by minutes is no longer
``sending`` and is not sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from django.db import connection as db_connection
from django.db import connections as db_connections
from django.db import transaction
from django.utils import timezone

from storeloop.core.bulk import insert_row
from storeloop.messaging.channels.base import ChannelInterface, Envelope, Outcome, SendResult, SettlesSends
from storeloop.messaging.models import HandOver, Message

logger = logging.getLogger("storeloop.dispatch")
Status = Message.Status
# Messages a sending thread hands to its provider per step: the grain of what a worker killed
# mid-send can leave ``unknown`` (see the module docstring).
HANDOVER_GROUP = 20

Accepted = list[tuple[Message, SendResult]]


@dataclass(slots=True)
class PartSent:
    """What a sending thread did with its part: every message's result, and the journal entries
    it wrote (deleted with the batch's outcomes)."""

    results: list[SendResult]
    entries: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _Request:
    accepted: Accepted
    group: list[int]
    future: Future[tuple[set[int], int | None]]


class Recorder:
    """Writes the journal entries of a drain's sending threads (module docstring).

    ``submit`` returns a future of the ids of the group still ``sending``, which may be sent, and
    the entry written (``None`` when there was nothing to write). With ``inline`` each request is
    written at once in the calling thread: when the caller is inside a transaction (whose rows
    other connections cannot see), and for a single batch (no recorder thread started for it).
    """

    def __init__(self, *, inline: bool) -> None:
        self._inline = inline
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, accepted: Accepted, group: list[int]) -> Future[tuple[set[int], int | None]]:
        request = _Request(accepted, group, Future())
        if not accepted and not group:  # nothing to write: no transaction (on SQLite, no write lock)
            request.future.set_result((set(), None))
            return request.future
        if self._inline:
            _commit([request])
            return request.future
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="dispatch-recorder", daemon=True)
                self._thread.start()
        self._requests.put(request)
        return request.future

    def close(self) -> None:
        if self._thread is not None:
            self._requests.put(None)
            self._thread.join()

    def _work(self) -> None:
        try:
            while (first := self._requests.get()) is not None:
                batch, closing = [first], False
                while True:  # everything asked for meanwhile goes into the same transaction
                    try:
                        request = self._requests.get_nowait()
                    except queue.Empty:
                        break
                    if request is None:
                        closing = True
                        break
                    batch.append(request)
                _commit(batch)
                if closing:
                    return
        finally:
            db_connections.close_all()


def _commit(batch: Sequence[_Request]) -> None:
    """One transaction, one entry for the batch of requests; every future gets its answer or the error."""
    group = [pk for request in batch for pk in request.group]
    accepted = {str(m.pk): r.provider_message_id[:200] for request in batch for m, r in request.accepted}
    try:
        with transaction.atomic():
            ours = _still_sending(group)
            handed = [pk for pk in group if pk in ours]
            entry = None
            if handed or accepted:
                entry = insert_row(HandOver, ("created_at", "handed", "accepted"), (timezone.now(), handed, accepted))
    except Exception as exc:  # whatever it is, every waiting thread must hear of it
        for request in batch:
            request.future.set_exception(exc)
        return
    for request in batch:
        request.future.set_result((ours.intersection(request.group), entry))


def _still_sending(group: list[int]) -> set[int]:
    """Of ``group``, the ids still ``sending`` (locked on PostgreSQL, as the reaper locks them).
    Hand-written: the ORM's query building cost more than the query, once per group."""
    if not group:
        return set()
    table = db_connection.ops.quote_name(Message._meta.db_table)
    lock = " FOR UPDATE" if db_connection.features.has_select_for_update else ""
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id IN ({', '.join(str(int(pk)) for pk in group)}) "  # noqa: S608 (int literals)
            f"AND status || '' = %s{lock}",  # see core.bulk.value_is
            [Status.SENDING],
        )
        return {row[0] for row in cursor.fetchall()}


def _steps(channel: ChannelInterface, part: list[tuple[Message, Envelope]]) -> list[list[tuple[Message, Envelope]]]:
    # A provider that lists what it accepted settles a lost worker's sends by being asked
    # (``messaging.settlement``): one step for the whole part is enough there.
    size = len(part) if isinstance(channel, SettlesSends) else HANDOVER_GROUP
    return [part[i : i + size] for i in range(0, len(part), size)]


def send_part(
    channel: ChannelInterface, name: str, part: list[tuple[Message, Envelope]], recorder: Recorder
) -> PartSent:
    """Send one provider connection's part of a batch, group by group (module docstring)."""
    settles = isinstance(channel, SettlesSends)
    groups = _steps(channel, part)
    done = PartSent([])
    if not groups:
        return done
    # Named here, when a thread takes the part up, not when the batch was marked: a part waiting
    # for a thread (the next batch's, while this one is sent) was never handed over.
    pending = recorder.submit([], [m.pk for m, _ in groups[0]])
    accepted: Accepted = []
    for index, group in enumerate(groups):
        try:
            ours, entry = pending.result()
        except Exception as exc:  # not on record: nothing more of this part goes out
            logger.warning("channel %s: hand-over not recorded (%s): the rest is tried again", name, exc)
            done.results.extend(SendResult(m.pk, Outcome.RETRY, error="hand-over not recorded", retry_after=30.0)
                                for later in groups[index:] for m, _ in later)  # fmt: skip
            return done
        if entry is not None:
            done.entries.add(entry)
        following = [m.pk for m, _ in groups[index + 1]] if index + 1 < len(groups) else []
        pending = recorder.submit(accepted, following)  # written while this group is sent
        sent = _send_group(channel, name, [e for m, e in group if m.pk in ours])
        done.results.extend(sent)
        # Taken back (no longer ``sending``): not sent; the batch's write leaves such rows alone.
        done.results.extend(SendResult(m.pk, Outcome.RETRY, error="taken back before the provider call")
                            for m, _ in group if m.pk not in ours)  # fmt: skip
        by_id = {m.pk: m for m, _ in group}
        accepted = [(by_id[r.message_id], r) for r in sent if r.outcome == Outcome.SENT]
    # The last group's sends, for a worker lost before the batch's outcomes are written (a provider
    # that can be asked does not need them).
    last = recorder.submit([] if settles else accepted, [])
    for future in (pending, last):
        try:
            done.entries.add(future.result()[1] or 0)
        except Exception as exc:  # the batch's write records the sends all the same
            logger.warning("channel %s: journal entry not written (%s)", name, exc)
    done.entries.discard(0)
    return done


def _send_group(channel: ChannelInterface, name: str, envelopes: list[Envelope]) -> list[SendResult]:
    if not envelopes:
        return []
    try:
        return channel.send_message(envelopes)
    except Exception as exc:  # a channel that blows up must not lose the batch's outcomes
        logger.exception("channel %s failed a batch", name)
        return [SendResult(e.message_id, Outcome.UNKNOWN, error=type(exc).__name__) for e in envelopes]


def write_sent(sent: Accepted, when: dt.datetime | None = None) -> None:
    """Record accepted sends: one prepared statement for all of them instead of an ORM update per
    message (it was a fifth of the dispatcher's time). Rows a status webhook already moved on
    (delivered, read) keep their status and only gain what only we know: provider id, send time
    (a second statement, run only when the first did not update every row)."""
    if not sent:
        return
    table = db_connection.ops.quote_name(Message._meta.db_table)
    at = db_connection.ops.adapt_datetimefield_value(when or timezone.now())
    rows = [(at, r.provider_message_id[:200], m.attempts + 1, m.id) for m, r in sent]
    with db_connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET status = 'sent', sent_at = %s, provider_message_id = %s, attempts = %s, "  # noqa: S608
            "claimed_until = NULL, last_error = '' WHERE id = %s AND status = 'sending'",
            rows,
        )
        if cursor.rowcount == len(rows):  # the common case: no webhook overtook any of them
            return
        cursor.executemany(
            f"UPDATE {table} SET sent_at = COALESCE(sent_at, %s), provider_message_id = %s, attempts = %s "  # noqa: S608
            "WHERE id = %s AND status NOT IN ('sending', 'sent')",
            rows,
        )
