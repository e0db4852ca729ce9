"""The consent gate as a set: which contacts ``MessagingConsentManager.has_consent`` would allow now.

A campaign uses it to materialise messages only for contacts the gate lets through (one join per
batch instead of a gate call per contact). It mirrors ``has_consent`` rule for rule — an address,
not suppressed, and for marketing a granted consent and no pause; for transactional no
withdrawal — and a test checks the two agree. It is only a pre-filter: the dispatcher still asks
``has_consent`` for every message at send time, so a withdrawal after materialisation still wins.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Exists, OuterRef, Q

from storeloop.consent.models import Channel, ConsentState, ConsentStatus, Preference, Purpose, Suppression


def address_field(channel: str) -> str:
    return "email" if channel == Channel.EMAIL else "phone"


def eligible_q(channel: str, purpose: str, now: dt.datetime) -> Q:
    """A ``Q`` over ``Contact``: the gate would allow ``purpose`` messages on ``channel`` at ``now``."""
    field = address_field(channel)
    suppressed = Suppression.objects.filter(store_id=OuterRef("store_id"), channel=channel, address=OuterRef(field))
    q = ~Q(**{field: ""}) & Q(~Exists(suppressed))
    states = ConsentState.objects.filter(contact_id=OuterRef("pk"), channel=channel, purpose=purpose)
    if purpose == Purpose.TRANSACTIONAL:
        return q & Q(~Exists(states.filter(status=ConsentStatus.WITHDRAWN)))
    paused = Preference.objects.filter(contact_id=OuterRef("pk"), paused_until__gt=now)
    return q & Q(Exists(states.filter(status=ConsentStatus.GRANTED))) & Q(~Exists(paused))
