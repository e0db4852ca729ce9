"""Double opt-in for marketing email: the pending request and the confirmation email.

``MessagingConsentManager.request_double_opt_in`` is the entry point. In one transaction (joining
the caller's, if any) it locks the contact, records a ``request`` in the ledger (state
``pending``) and queues a *transactional* email through ``MessageDispatcher.queue_message`` with
the dedupe key ``double-opt-in:<request event id>``; the send starts after commit. The email uses
the store's published ``double-opt-in`` email template, or a built-in default that is saved (and
published) for the store through ``TemplateRepository`` the first time it is needed, so it is
versioned and can be edited like any other template. The link is ``custom.confirm_url``.

Asking again while a request younger than ``RESEND_AFTER`` is pending (a double click, a form
submitted twice) records nothing and returns the message already queued. Later, a new request is
recorded and a new email goes out; every link sent stays valid until it expires (7 days). A
contact who already granted gets no email at all.

Kept apart from ``consent.services`` because it needs messaging, which itself imports the gate.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

from django.db import transaction
from django.utils import timezone

from storeloop.consent.models import Channel, ConsentEvent, ConsentState, ConsentStatus, Purpose
from storeloop.consent.services import MessagingConsentManager, live_contact
from storeloop.contacts.models import Contact
from storeloop.core.errors import Conflict, NotFound, ValidationError
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.models import Message, TemplateVersion
from storeloop.messaging.templates import TemplateRepository
from storeloop.stores.models import Store

TEMPLATE_KEY = "double-opt-in"
RESEND_AFTER = dt.timedelta(minutes=15)
_LINK = re.compile(r"custom\s*(?:\.\s*confirm_url\b|\[\s*['\"]confirm_url['\"]\s*\])")

DEFAULT_SUBJECT = "Please confirm your subscription to {{ store.name }}"
DEFAULT_TEXT = """Hello{% if contact.first_name %} {{ contact.first_name }}{% endif %},

please confirm that you want news and offers from {{ store.name }} by email:

{{ custom.confirm_url }}

The link works for 7 days. If you did not ask for this, ignore this message: without your
confirmation we will not send you any.
"""
DEFAULT_HTML = """<p>Hello{% if contact.first_name %} {{ contact.first_name }}{% endif %},</p>
<p>please confirm that you want news and offers from {{ store.name }} by email:</p>
<p><a href="{{ custom.confirm_url }}">Yes, subscribe me</a></p>
<p>The link works for 7 days. If you did not ask for this, ignore this message: without your
confirmation we will not send you any.</p>
"""

Outcome = Literal["queued", "already_queued", "already_granted"]


@dataclass(frozen=True)
class DoubleOptInRequest:
    """``queued``: a new request and its email; ``already_queued``: a recent request is pending and
    its email is the one returned; ``already_granted``: nothing to ask (``event`` is the grant)."""

    outcome: Outcome
    event: ConsentEvent
    message: Message | None


def confirmation_template(store: Store) -> TemplateVersion:
    """The store's published confirmation template, or the built-in default saved for the store."""
    repo = TemplateRepository()
    try:
        version = repo.get_template(store, TEMPLATE_KEY, Channel.EMAIL)
    except NotFound:
        version = repo.save_template(
            store, TEMPLATE_KEY, Channel.EMAIL, subject=DEFAULT_SUBJECT, body_text=DEFAULT_TEXT,
            body_html=DEFAULT_HTML, variables=("contact", "store", "custom"), created_by="storeloop",
            description="Double opt-in confirmation (built-in default: save and publish a new version to change it)",
        )  # fmt: skip
        repo.publish(version)
        return version
    if not _LINK.search(f"{version.body_text}\n{version.body_html}"):
        raise ValidationError(
            f"the store's published {TEMPLATE_KEY!r} email template has no confirmation link: "
            "add {{ custom.confirm_url }} to its body and publish it",
            code="template_missing_confirm_link", details=[{"field": "template", "error": TEMPLATE_KEY}],
        )  # fmt: skip
    return version


def request_double_opt_in(
    gate: MessagingConsentManager,
    contact: Contact,
    channel: str,
    *,
    source: str,
    evidence: dict[str, Any] | None,
) -> DoubleOptInRequest:
    from storeloop.messaging.channels.factory import channel_for
    from storeloop.messaging.tasks import request_dispatch

    if channel != Channel.EMAIL:
        raise ValidationError("double opt-in is available for email only", code="double_opt_in_unsupported",
                              details=[{"field": "channel", "error": "email only"}])  # fmt: skip
    with transaction.atomic():
        # The lock serialises two requests for one person (a double click on two workers): the
        # second sees the first's request and reuses its email.
        contact = (
            Contact.objects.select_for_update(of=("self",)).select_related("store").get(pk=live_contact(contact).pk)
        )
        if not contact.email:
            raise ValidationError("the contact has no email address", code="no_address")
        reachable = gate.has_consent(contact, channel, Purpose.TRANSACTIONAL)
        if not reachable:
            raise Conflict(f"the confirmation email cannot be sent to this contact ({reachable.reason})",
                           code="confirmation_blocked", details={"reason": reachable.reason})  # fmt: skip
        state = (
            ConsentState.objects.filter(contact=contact, channel=channel, purpose=Purpose.MARKETING)
            .select_related("last_event")
            .first()
        )
        if state is not None and state.status == ConsentStatus.GRANTED:
            return DoubleOptInRequest("already_granted", state.last_event, None)
        template = confirmation_template(contact.store)
        recent = (
            state is not None
            and state.status == ConsentStatus.PENDING
            and state.last_event.action == ConsentEvent.Action.REQUEST
            and state.last_event.occurred_at > timezone.now() - RESEND_AFTER
        )
        if state is not None and recent:
            event = state.last_event
        else:
            event = gate.grant_consent(contact, channel, Purpose.MARKETING, source=source, evidence=evidence,
                                       double_opt_in=True)  # fmt: skip
        dedupe_key = f"double-opt-in:{event.pk}"
        queued = Message.objects.filter(store=contact.store, dedupe_key=dedupe_key).first()
        if queued is not None:
            return DoubleOptInRequest("already_queued", event, queued)
        message = MessageDispatcher(channel_for).queue_message(
            store=contact.store, contact=contact, channel=channel, purpose=Purpose.TRANSACTIONAL, template=template,
            dedupe_key=dedupe_key, context={"custom": {"confirm_url": gate.generate_confirmation_link(contact)}},
        )  # fmt: skip
        request_dispatch()
        return DoubleOptInRequest("queued", event, message)
