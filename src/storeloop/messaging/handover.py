"""Handing a batch to the providers group by group, so a worker's death costs little.

The dispatcher records every attempt (``sending``) before any provider call. Without more, a
worker killed mid-batch leaves the whole batch ``sending``, and since nobody can tell which of its
messages a provider took (an SMTP relay cannot be asked), all of them end ``unknown``: most never
sent, none sent again. So each sending thread goes through its part ``HANDOVER_GROUP`` messages
at a time, and a group reaches the provider only once a journal entry (``HandOver``) names it;
the same entry lists the sends the provider accepted of the group before. (Where the provider
can be asked what it took, Twilio, one entry for the whole part is enough: the settlement asks.)
The batch's outcomes are still written in one transaction at its end. The reaper reads what a
dead worker left (``reap_stuck_sends``): accepted → ``sent``, handed over → ``unknown``, neither →
queued again, and deletes entries older than any live batch (one entry may name groups of two
batches, so a batch cannot delete its own).

Why a journal and not a column on the messages: an entry is one appended row (~0.16 ms per
commit on SQLite, its check of the group included), where marking or recording 20 message rows
rewrites their pages and indexes (~0.7 ms).

The writes seldom stall the sends: while a group is with the provider, the ``Recorder`` commits
the entry for the next one, together with whatever other sending threads asked for meanwhile (a
group commit); a thread waits only for its part's first entry, or when the database is slower than
the group's sends. What a killed worker leaves ``unknown`` per sending thread: the group being
sent, the next one (already named) and, if its entry had not landed, the accepted sends of the
group before.

The entry's transaction first reads the group's rows (locking them on PostgreSQL, as the reaper
does) and names only those still in the batch's attempt (``sending`` with its ``attempted_at``): a
worker that overran its claim by minutes (a frozen VM) finds the rows the reaper took back, even
those another worker is sending by now, and does not send them; the batch's outcomes are written
under the same condition. Inside a group nothing is checked: a worker frozen in the middle of a
group for over ten minutes sends the rest of that group when it wakes.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

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
    """What a sending thread did with its part: every message's result."""

    results: list[SendResult]


@dataclass(slots=True)
class _Request:
    accepted: Accepted
    group: list[int]
    attempt: dt.datetime  # the batch's ``attempted_at``: its group is sent only while still that attempt
    future: Future[set[int]]


class Recorder:
    """Writes the journal entries of a drain's sending threads (module docstring).

    ``submit`` returns a future of the ids of the group still in the batch's attempt (``sending``,
    ``attempted_at``), which may be sent. With ``inline`` each request is
    written at once in the calling thread: when the caller is inside a transaction (whose rows
    other connections cannot see), and for a single batch (no recorder thread started for it).
    """

    def __init__(self, *, inline: bool) -> None:
        self._inline = inline
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, accepted: Accepted, group: list[int], attempt: dt.datetime) -> Future[set[int]]:
        request = _Request(accepted, group, attempt, Future())
        if not accepted and not group:  # nothing to write: no transaction (on SQLite, no write lock)
            request.future.set_result(set())
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
    try:
        with transaction.atomic():
            ours: set[int] = set()
            attempts: dict[dt.datetime, list[int]] = defaultdict(list)  # two batches' requests meet at a change
            for request in batch:
                attempts[request.attempt].extend(request.group)
            for attempt, group in attempts.items():
                ours |= _still_in_attempt(group, attempt)
            handed = [pk for request in batch for pk in request.group if pk in ours]
            accepted = {str(m.pk): r.provider_message_id[:200] for request in batch for m, r in request.accepted}
            if handed or accepted:
                insert_row(HandOver, ("created_at", "handed", "accepted"), (timezone.now(), handed, accepted))
    except BaseException as exc:  # whatever it is, every waiting thread must hear of it
        for request in batch:
            request.future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    for request in batch:
        request.future.set_result(ours.intersection(request.group))


def _still_in_attempt(group: list[int], attempt: dt.datetime) -> set[int]:
    """Of ``group``, the ids still ``sending`` in this attempt (locked on PostgreSQL, as the reaper
    locks them): not a row the reaper took back, nor another worker's attempt of it since.
    Hand-written: the ORM's query building cost more than the query, once per group."""
    if not group:
        return set()
    table = db_connection.ops.quote_name(Message._meta.db_table)
    lock = " FOR UPDATE" if db_connection.features.has_select_for_update else ""
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id IN ({', '.join(str(int(pk)) for pk in group)}) "  # noqa: S608 (int literals)
            f"AND status || '' = %s AND attempted_at = %s{lock}",  # || '': see core.bulk.value_is
            [Status.SENDING, db_connection.ops.adapt_datetimefield_value(attempt)],
        )
        return {row[0] for row in cursor.fetchall()}


def send_part(
    channel: ChannelInterface, name: str, part: list[tuple[Message, Envelope]], recorder: Recorder, attempt: dt.datetime
) -> PartSent:
    """Send one provider connection's part of a batch, group by group (module docstring)."""
    # A provider that lists what it accepted settles a lost worker's sends by being asked
    # (``messaging.settlement``): one step for the whole part is enough there.
    settles = isinstance(channel, SettlesSends)
    size = len(part) if settles else HANDOVER_GROUP
    groups = [part[i : i + size] for i in range(0, len(part), size)]
    done = PartSent([])
    if not groups:
        return done
    # Named here, when a thread takes the part up, not when the batch was marked: a part waiting
    # for a thread (the next batch's, while this one is sent) was never handed over.
    pending = recorder.submit([], [m.pk for m, _ in groups[0]], attempt)
    accepted: Accepted = []
    for index, group in enumerate(groups):
        try:
            ours = pending.result()
        except Exception as exc:  # not on record: nothing more of this part goes out
            logger.warning("channel %s: hand-over not recorded (%s): the rest is tried again", name, exc)
            done.results.extend(SendResult(m.pk, Outcome.RETRY, error="hand-over not recorded", retry_after=30.0)
                                for later in groups[index:] for m, _ in later)  # fmt: skip
            return done
        following = [m.pk for m, _ in groups[index + 1]] if index + 1 < len(groups) else []
        pending = recorder.submit(accepted, following, attempt)  # written while this group is sent
        sent = _send_group(channel, name, [e for m, e in group if m.pk in ours])
        done.results.extend(sent)
        # Taken back (no longer in this attempt): not sent; the batch's write leaves such rows alone.
        done.results.extend(SendResult(m.pk, Outcome.RETRY, error="taken back before the provider call")
                            for m, _ in group if m.pk not in ours)  # fmt: skip
        by_id = {m.pk: m for m, _ in group}
        accepted = [(by_id[r.message_id], r) for r in sent if r.outcome == Outcome.SENT]
    # The last group's sends, for a worker lost before the batch's outcomes are written (a provider
    # that can be asked does not need them).
    last = recorder.submit([] if settles else accepted, [], attempt)
    for future in (pending, last):
        try:
            future.result()
        except Exception as exc:  # the batch's write records the sends all the same
            logger.warning("channel %s: journal entry not written (%s)", name, exc)
    return done


def _send_group(channel: ChannelInterface, name: str, envelopes: list[Envelope]) -> list[SendResult]:
    if not envelopes:
        return []
    try:
        return channel.send_message(envelopes)
    except Exception as exc:  # a channel that blows up must not lose the batch's outcomes
        logger.exception("channel %s failed a batch", name)
        return [SendResult(e.message_id, Outcome.UNKNOWN, error=type(exc).__name__) for e in envelopes]


def write_sent(sent: Accepted, when: dt.datetime, attempt: dt.datetime) -> None:
    """Record accepted sends of one attempt (``attempted_at``): one prepared statement for all of
    them instead of an ORM update per message (it was a fifth of the dispatcher's time). Rows a
    status webhook already moved on (delivered, read) keep their status and only gain what only
    we know: provider id, send time (a second statement, run only when the first did not update
    every row). A row in another attempt by now is left alone."""
    if not sent:
        return
    table = db_connection.ops.quote_name(Message._meta.db_table)
    at = db_connection.ops.adapt_datetimefield_value(when)
    of = db_connection.ops.adapt_datetimefield_value(attempt)
    rows = [(at, r.provider_message_id[:200], m.attempts + 1, m.id, of) for m, r in sent]
    with db_connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET status = 'sent', sent_at = %s, provider_message_id = %s, attempts = %s, "  # noqa: S608
            "claimed_until = NULL, last_error = '' WHERE id = %s AND status = 'sending' AND attempted_at = %s",
            rows,
        )
        if cursor.rowcount == len(rows):  # the common case: no webhook overtook any of them
            return
        cursor.executemany(
            f"UPDATE {table} SET sent_at = COALESCE(sent_at, %s), provider_message_id = %s, attempts = %s "  # noqa: S608
            "WHERE id = %s AND status NOT IN ('sending', 'sent') AND attempted_at = %s",
            rows,
        )
