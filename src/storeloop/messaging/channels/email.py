"""``EmailChannel``: the dispatcher's email port over one SMTP relay (``SmtpSender``).

Why it looks like this:

- A few ``SmtpSender``s per connection (its ``connections`` setting), kept by the factory across
  batches, so batches ride open SMTP sessions instead of paying TCP + TLS + AUTH per message, and
  the dispatcher's sending threads each get a session of their own (a session carries one message
  at a time). A thread waits for a free session when all are busy.
- ``message_id_local`` is ``"sl-" + idempotency_key``: the Message-ID is derived from the message
  row, so any copy that ever leaves (a resend by an operator, a relay retry) carries the same id and
  bounces/complaints can be matched back to the row.
- Outcomes follow the sender's error tree: a refused recipient whose mailbox does not exist is
  ``UNDELIVERABLE`` (the dispatcher suppresses the address), any other refusal ``FAILED``; a
  temporary failure is ``RETRY`` unless the server may already have queued the message
  (``maybe_delivered``), which is ``UNKNOWN``: never resent.
- A message that cannot be built (bad address, marketing without an https unsubscribe link) fails
  here, before any network call, and does not stop the rest of the batch.
- Every marketing mail links the preference center: a part whose template did not show
  ``{{ preferences_url }}`` gets a footer with it (``with_preferences_footer``), in the template's
  language where we have the words (``FOOTERS``), else in English.
"""

from __future__ import annotations

import queue
import re
from collections.abc import Sequence
from html import escape  # not Django's: its lazy-string wrapper costs ~1.5 µs more per call, 5-6 calls per e-mail

from django.utils.html import strip_tags

from storeloop.integrations.smtp.client import SendResult as SmtpResult
from storeloop.integrations.smtp.client import SmtpSender
from storeloop.integrations.smtp.errors import SmtpError, SmtpRecipientRejected, SmtpTransientError, scrub
from storeloop.integrations.smtp.message import EmailMessageSpec
from storeloop.messaging.channels.base import Envelope, Outcome, SendResult

MESSAGE_ID_PREFIX = "sl-"


def message_id_local(envelope: Envelope) -> str:
    """Left part of the Message-ID: stable per message row, so every copy is recognisable."""
    return MESSAGE_ID_PREFIX + envelope.idempotency_key


class EmailChannel:
    """``ChannelInterface`` for e-mail over one or more SMTP sessions (``senders``)."""

    name = "email"

    def __init__(
        self,
        senders: SmtpSender | Sequence[SmtpSender],
        *,
        from_addr: str,
        from_name: str = "",
        reply_to: str = "",
        return_path: str = "",
        unsubscribe_mailto: str = "",
    ) -> None:
        self.senders = [senders] if isinstance(senders, SmtpSender) else list(senders)
        if not self.senders:
            raise ValueError("an e-mail channel needs at least one SMTP sender")
        self._idle: queue.LifoQueue[SmtpSender] = queue.LifoQueue()
        for sender in self.senders:
            self._idle.put(sender)
        self.from_addr = from_addr
        self.from_name = from_name
        self.reply_to = reply_to
        self.return_path = return_path
        self.unsubscribe_mailto = unsubscribe_mailto

    def close(self) -> None:
        for sender in self.senders:
            sender.close()

    # --- ChannelInterface ----------------------------------------------------------------------

    def validate_message(self, envelope: Envelope) -> str | None:
        try:
            self.spec_for(envelope)
        except ValueError as exc:
            return scrub(str(exc))
        return None

    def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
        results: list[SendResult | None] = [None] * len(envelopes)
        specs: list[EmailMessageSpec] = []
        positions: list[int] = []
        for index, envelope in enumerate(envelopes):
            try:
                specs.append(self.spec_for(envelope))
            except ValueError as exc:
                error = f"invalid message: {scrub(str(exc))}"
                results[index] = SendResult(envelope.message_id, Outcome.FAILED, error=error)
                continue
            positions.append(index)
        if specs:
            sender = self._idle.get()  # the most recently used session first: it is surely open
            try:
                outcomes = sender.send_many(specs)
            finally:
                self._idle.put(sender)
            for index, outcome in zip(positions, outcomes, strict=True):
                results[index] = result_for(envelopes[index], outcome)
        return [r for r in results if r is not None]

    def test_connection(self) -> None:
        self.senders[0].test_connection()

    # --- building ------------------------------------------------------------------------------

    def spec_for(self, envelope: Envelope) -> EmailMessageSpec:
        """The e-mail for ``envelope``; ``ValueError`` says what is wrong with it."""
        rendered = envelope.rendered
        text = rendered.text if rendered.text.strip() else strip_tags(rendered.html).strip()
        html = rendered.html
        if envelope.marketing and envelope.preferences_url:
            text, html = with_preferences_footer(
                text, html, envelope.preferences_url, envelope.unsubscribe_url, envelope.locale
            )
        return EmailMessageSpec(
            from_addr=self.from_addr,
            from_name=self.from_name or None,
            to_addr=envelope.to,
            subject=rendered.subject,
            text=text,
            html=html or None,
            message_id_local=message_id_local(envelope),
            reply_to=self.reply_to or None,
            return_path=self.return_path or None,
            marketing=envelope.marketing,
            unsubscribe_url=envelope.unsubscribe_url or None,
            unsubscribe_mailto=(self.unsubscribe_mailto or None) if envelope.marketing else None,
        )


_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)

# The footer's words per language (a template's locale, "de" or "de-AT"): the link to the
# preference center, the word between the links, the unsubscribe link. Pages behind the links
# are the service's own; the footer sits in the shop's message, so it speaks the message's language.
FOOTERS: dict[str, tuple[str, str, str]] = {
    "en": ("Manage your e-mail preferences", "or", "unsubscribe"),
    "de": ("E-Mail-Einstellungen verwalten", "oder", "abmelden"),
    "fr": ("Gérer vos préférences e-mail", "ou", "vous désabonner"),
    "es": ("Gestionar tus preferencias de correo", "o", "darte de baja"),
    "it": ("Gestisci le tue preferenze e-mail", "o", "annulla l'iscrizione"),
    "nl": ("Beheer je e-mailvoorkeuren", "of", "meld je af"),
    "pt": ("Gerencie suas preferências de e-mail", "ou", "cancele a inscrição"),
    "pt-pt": ("Gerir as suas preferências de e-mail", "ou", "cancelar a subscrição"),
    "pl": ("Zarządzaj ustawieniami e-mail", "lub", "wypisz się"),
    "sv": ("Hantera dina e-postinställningar", "eller", "avregistrera dig"),
    "da": ("Administrer dine e-mailindstillinger", "eller", "afmeld dig"),
}


def footer_words(locale: str) -> tuple[str, str, str]:
    """``FOOTERS`` for a locale ("pt_PT", "pt-BR", "DE"): the exact locale, else its language, else English."""
    tag = locale.strip().lower().replace("_", "-")
    return FOOTERS.get(tag) or FOOTERS.get(tag.split("-", 1)[0]) or FOOTERS["en"]


def with_preferences_footer(
    text: str, html: str, preferences_url: str, unsubscribe_url: str, locale: str = "en"
) -> tuple[str, str]:
    """Every marketing e-mail links the preference center: a footer is added to each part (text,
    HTML) whose template did not show ``{{ preferences_url }}`` (before ``</body>`` in HTML)."""
    manage, conjunction, unsubscribe = footer_words(locale)
    if preferences_url not in text:
        text = f"{text.rstrip()}\n\n--\n{manage} {conjunction} {unsubscribe}: {preferences_url}\n"
    if html and escape(preferences_url) not in html and preferences_url not in html:
        footer = (
            '<p style="font-size:12px;color:#666666">'
            f'<a href="{escape(preferences_url)}">{escape(manage)}</a>'
            + (
                f' {escape(conjunction)} <a href="{escape(unsubscribe_url)}">{escape(unsubscribe)}</a>'
                if unsubscribe_url
                else ""
            )
            + ".</p>"
        )
        ends = list(_BODY_END.finditer(html))
        at = ends[-1].start() if ends else len(html)
        html = f"{html[:at]}{footer}{html[at:]}"
    return text, html


def result_for(envelope: Envelope, outcome: SmtpResult | SmtpError) -> SendResult:
    """Map one ``send_many`` outcome onto the dispatcher's outcomes (see the module docstring)."""
    if isinstance(outcome, SmtpResult):
        return SendResult(envelope.message_id, Outcome.SENT, provider_message_id=outcome.message_id)
    message_id = outcome.message_id or ""
    error = str(outcome)
    if isinstance(outcome, SmtpTransientError):
        if outcome.maybe_delivered:
            return SendResult(envelope.message_id, Outcome.UNKNOWN, provider_message_id=message_id, error=error)
        return SendResult(envelope.message_id, Outcome.RETRY, error=error, retry_after=outcome.retry_after)
    if isinstance(outcome, SmtpRecipientRejected) and outcome.suppress:
        return SendResult(envelope.message_id, Outcome.UNDELIVERABLE, error=error)
    return SendResult(envelope.message_id, Outcome.FAILED, error=error)
