"""``WhatsAppChannel``: the dispatcher's WhatsApp port over the Cloud API (``WhatsAppClient``).

Which message goes:

- inside the 24-hour customer-service window (``envelope.window_open``) with a text body: free text;
- otherwise the approved template named by the message (``wa_template_name`` / ``wa_language`` on
  the envelope, with ``rendered.wa_parameters`` as the body's ``{{1}}``, ``{{2}}`` ...);
- if Meta says the window is closed after all (131047: our view of the window was stale), the
  text was refused, not sent, so the template goes instead when there is one;
- no window and no template: ``FAILED``, nothing to send.

Outcomes: 131050 (the user stopped *marketing* from this business) is ``OPTED_OUT`` for a
marketing message; for any other message it is a plain ``FAILED``, since Meta still allows
utility messages and we must not withdraw consent the person did not withdraw. 131026 (not on
WhatsApp, outdated app, terms not accepted) is ``FAILED``, not ``UNDELIVERABLE``: two of its
three causes go away on the person's side, and a suppression is permanent. A send whose answer was
lost (``maybe_sent``) is ``UNKNOWN``; ``callback_data`` carries our idempotency key, so the status
webhooks of such a message still name it. Account-wide failures (token, the number's throughput
limit) and transient failures stop the batch: the rest is not attempted.
"""

from __future__ import annotations

from storeloop.integrations.whatsapp.client import WhatsAppClient, normalize_recipient
from storeloop.integrations.whatsapp.errors import (
    WhatsAppAuthError,
    WhatsAppError,
    WhatsAppRateLimited,
    WhatsAppRecipientOptedOut,
    WhatsAppTransientError,
    WhatsAppWindowClosed,
    scrub,
)
from storeloop.integrations.whatsapp.models import MAX_TEXT, SentMessage
from storeloop.messaging.channels.base import Envelope, Outcome, SendResult

WINDOW_CLOSED = "outside the 24-hour window and no approved template"
Rest = tuple[Outcome, str, float | None]  # outcome, error, retry_after


def template_of(envelope: Envelope) -> tuple[str, str]:
    """``(name, language)`` of the approved template the message may fall back to; empty if none."""
    return envelope.wa_template_name, envelope.wa_language


class WhatsAppChannel:
    """``ChannelInterface`` for WhatsApp. Sends one request per message, sequentially."""

    name = "whatsapp"

    def __init__(self, client: WhatsAppClient) -> None:
        self.client = client

    def close(self) -> None:
        self.client.close()

    def validate_message(self, envelope: Envelope) -> str | None:
        try:
            normalize_recipient(envelope.to)
        except WhatsAppError as exc:
            return exc.message
        name, language = template_of(envelope)
        if name and not language:
            return f"the approved template {name!r} has no language"
        text = envelope.rendered.text
        if envelope.window_open and text.strip():
            return f"the text has {len(text)} characters; WhatsApp allows {MAX_TEXT}" if len(text) > MAX_TEXT else None
        return None if name else WINDOW_CLOSED

    def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
        results: list[SendResult] = []
        rest: Rest | None = None
        for envelope in envelopes:
            if rest is not None:
                results.append(SendResult(envelope.message_id, rest[0], error=rest[1], retry_after=rest[2]))
                continue
            problem = self.validate_message(envelope)
            if problem is not None:
                results.append(SendResult(envelope.message_id, Outcome.FAILED, error=problem))
                continue
            try:
                sent = self._send(envelope)
            except WhatsAppError as exc:
                results.append(result_for_error(envelope, exc))
                rest = rest_after(exc)
            else:
                results.append(SendResult(envelope.message_id, Outcome.SENT, provider_message_id=sent.wamid))
        return results

    def test_connection(self) -> None:
        self.client.test_connection()

    def _send(self, envelope: Envelope) -> SentMessage:
        name, language = template_of(envelope)
        key = envelope.idempotency_key
        if envelope.window_open and envelope.rendered.text.strip():
            try:
                return self.client.send_text(envelope.to, envelope.rendered.text, callback_data=key)
            except WhatsAppWindowClosed:
                if not name:
                    raise
                # Refused, so nothing went out: the approved template may go instead.
        parameters = envelope.rendered.wa_parameters
        return self.client.send_template(envelope.to, name, language, parameters, callback_data=key)


def rest_after(exc: WhatsAppError) -> Rest | None:
    """What the unattempted rest of a batch gets after ``exc``, or None to carry on (see module doc).

    The pair rate limit (131056) concerns one recipient only and does not stop the batch.
    """
    error = f"not attempted: {exc}"[:500]
    if isinstance(exc, WhatsAppRateLimited):
        return (Outcome.RETRY, error, exc.retry_after) if exc.account_wide else None
    if isinstance(exc, WhatsAppTransientError):
        return Outcome.RETRY, error, exc.retry_after
    if isinstance(exc, WhatsAppAuthError):
        return Outcome.FAILED, error, None
    return None


def result_for_error(envelope: Envelope, exc: WhatsAppError) -> SendResult:
    error = scrub(str(exc))
    if isinstance(exc, WhatsAppTransientError):
        if exc.maybe_sent:
            return SendResult(envelope.message_id, Outcome.UNKNOWN, error=error)
        return SendResult(envelope.message_id, Outcome.RETRY, error=error, retry_after=exc.retry_after)
    if isinstance(exc, WhatsAppWindowClosed):
        return SendResult(envelope.message_id, Outcome.FAILED, error=f"{WINDOW_CLOSED} ({error})"[:500])
    if isinstance(exc, WhatsAppRecipientOptedOut) and envelope.marketing:
        return SendResult(envelope.message_id, Outcome.OPTED_OUT, error=error)
    return SendResult(envelope.message_id, Outcome.FAILED, error=error)
