"""``SmsChannel``: the dispatcher's SMS port over Twilio Programmable Messaging (``TwilioClient``).

Twilio's Messages API takes no idempotency key, so "never twice" rests on two things here: the
client never resends a create whose answer was lost (it raises ``maybe_sent``: a 5xx, a timeout
or a drop after the request went out), and this adapter maps that to ``UNKNOWN``, which the
dispatcher never resends by itself. Our idempotency key rides on the ``StatusCallback`` URL
(``?sl_key=``), so a status callback can still name the message whose create answer was lost; and
once the send is surely over, ``messaging.settlement`` asks Twilio (``accepted_since``) whether
it took the text: if so the message is ``sent``, if not it is queued again (so a 5xx is retried).

Outcomes: STOP at the carrier (21610) is ``OPTED_OUT`` (the dispatcher withdraws SMS consent);
a number that cannot take SMS (invalid, landline, unreachable) is ``UNDELIVERABLE`` (suppressed);
a rate limit Twilio still answers after the client's own short retries is ``RETRY`` with Twilio's
hint. Failures about the *account* (credentials, sender set-up, the account's rate limit) and
transient failures stop the batch: the rest is not attempted (see ``rest_after``).

A number our own E.164 check refuses fails without a request and is *not* suppressed:
libphonenumber's tables can lag new number ranges, and a suppression is permanent. Only Twilio's
own verdict (21211, 21614, 21612) suppresses.
"""

from __future__ import annotations

import datetime as dt

from storeloop.integrations.twilio.client import TwilioClient
from storeloop.integrations.twilio.errors import (
    TwilioError,
    TwilioInvalidNumber,
    TwilioNotMobile,
    TwilioRecipientOptedOut,
    TwilioTransientError,
    TwilioUnreachable,
    scrub,
)
from storeloop.integrations.twilio.segments import MAX_BODY_CHARS, validate_e164
from storeloop.messaging.channels.base import Envelope, Outcome, SendResult

_UNDELIVERABLE = (TwilioInvalidNumber, TwilioNotMobile, TwilioUnreachable)
Rest = tuple[Outcome, str, float | None]  # outcome, error, retry_after


class SmsChannel:
    """``ChannelInterface`` for SMS. Sends one request per message, sequentially."""

    name = "sms"

    def __init__(self, client: TwilioClient) -> None:
        self.client = client

    def close(self) -> None:
        self.client.close()

    def validate_message(self, envelope: Envelope) -> str | None:
        try:
            validate_e164(envelope.to)
        except ValueError as exc:
            return f"not an E.164 mobile number: {scrub(str(exc))}"
        body = envelope.rendered.text
        if not body.strip():
            return "the SMS body is empty"
        if len(body) > MAX_BODY_CHARS:
            return f"the SMS body has {len(body)} characters; at most {MAX_BODY_CHARS}"
        return None

    def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
        results: list[SendResult] = []
        rest: Rest | None = None  # set once the batch must stop: what the unattempted rest gets
        for envelope in envelopes:
            if rest is not None:
                results.append(SendResult(envelope.message_id, rest[0], error=rest[1], retry_after=rest[2]))
                continue
            problem = self.validate_message(envelope)
            if problem is not None:
                results.append(SendResult(envelope.message_id, Outcome.FAILED, error=problem))
                continue
            try:
                sent = self.client.send_sms(
                    envelope.to, envelope.rendered.text, idempotency_key=envelope.idempotency_key
                )
            except TwilioError as exc:
                results.append(result_for_error(envelope, exc))
                rest = rest_after(exc)
            except ValueError as exc:  # a key Twilio's URL cannot carry: our bug, not the recipient's
                results.append(SendResult(envelope.message_id, Outcome.FAILED, error=scrub(str(exc))))
            else:
                results.append(SendResult(envelope.message_id, Outcome.SENT, provider_message_id=sent.sid))
        return results

    def test_connection(self) -> None:
        self.client.test_connection()

    def accepted_since(self, to: str, since: dt.datetime) -> list[tuple[str, dt.datetime | None]]:
        """``(SID, created at)`` of the texts to ``to`` that Twilio took from this sender from ``since``
        on (``messaging.settlement`` asks this about ``unknown`` sends). Raises ``TwilioError``."""
        client = self.client
        return [
            (m.sid, m.date_created)
            for m in client.find_messages(to, since=since)
            if (m.direction or "outbound-api").startswith("outbound")
            and (
                m.messaging_service_sid == client.messaging_service_sid
                if client.messaging_service_sid
                else m.from_ == client.from_number
            )
        ]


def rest_after(exc: TwilioError) -> Rest | None:
    """What the unattempted rest of a batch gets after ``exc``, or None to carry on.

    Transient failures other than one recipient's (5xx, timeouts, the account's rate limit) stop the
    batch as ``RETRY``: in an outage every further request would likely end ``maybe_sent``, i.e.
    ``UNKNOWN`` and lost for good, while not sending them loses nothing. Account-wide terminal
    failures (credentials, sender set-up) stop it as ``FAILED`` with the same error.
    """
    error = f"not attempted: {exc}"[:500]
    if isinstance(exc, TwilioTransientError):
        return Outcome.RETRY, error, exc.retry_after
    if exc.scope == "account":
        return Outcome.FAILED, error, None
    return None


def result_for_error(envelope: Envelope, exc: TwilioError) -> SendResult:
    """Map a Twilio failure onto the dispatcher's outcomes (see the module docstring)."""
    error = str(exc)
    if isinstance(exc, TwilioTransientError):
        if exc.maybe_sent:
            return SendResult(envelope.message_id, Outcome.UNKNOWN, error=error)
        return SendResult(envelope.message_id, Outcome.RETRY, error=error, retry_after=exc.retry_after)
    if isinstance(exc, TwilioRecipientOptedOut):
        return SendResult(envelope.message_id, Outcome.OPTED_OUT, error=error)
    if isinstance(exc, _UNDELIVERABLE):
        return SendResult(envelope.message_id, Outcome.UNDELIVERABLE, error=error)
    return SendResult(envelope.message_id, Outcome.FAILED, error=error)
