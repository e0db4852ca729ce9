"""Unsubscribe page, RFC 8058 one-click POST, and the preference center. No login: the signed
link is the credential, and it expires."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from storeloop.consent.models import Channel, ConsentState, ConsentStatus, LawfulBasis, Preference, Purpose
from storeloop.consent.services import MessagingConsentManager, address_for, live_contact
from storeloop.contacts.models import Contact
from storeloop.core.errors import ApplicationError

CHANNEL_LABELS = {Channel.EMAIL: "email", Channel.SMS: "text messages", Channel.WHATSAPP: "WhatsApp messages"}


def _mask(address: str) -> str:
    """Show enough to recognise the address, not enough to harvest it from a forwarded link."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}…@{domain}"
    return f"…{address[-4:]}" if address else ""


def _evidence(request: HttpRequest) -> dict[str, Any]:
    return {"ip": request.META.get("REMOTE_ADDR", ""), "user_agent": request.headers.get("User-Agent", "")[:300]}


@csrf_exempt  # mail clients POST the one-click request without any session (RFC 8058)
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    gate = MessagingConsentManager()
    try:
        contact, channel, purpose = gate.read_unsubscribe_token(token)
    except ApplicationError as exc:
        return render(request, "consent/unsubscribe.html", {"error": exc.message}, status=exc.status_code)
    context = {
        "address": _mask(address_for(contact, channel)),
        "channel_label": CHANNEL_LABELS.get(Channel(channel), channel),
        "purpose": "marketing" if purpose == Purpose.MARKETING else "service",
        "preferences_url": f"/preferences/{token}",
    }
    if request.method == "POST":
        gate.unsubscribe(token, evidence=_evidence(request))
        return render(request, "consent/unsubscribe.html", {**context, "done": True})
    return render(request, "consent/unsubscribe.html", context)


@csrf_exempt  # the signed token authorises the change; there is no session to protect
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    gate = MessagingConsentManager()
    try:
        contact, channel, _ = gate.read_unsubscribe_token(token)
    except ApplicationError as exc:
        return render(request, "consent/preferences.html", {"error": exc.message}, status=exc.status_code)
    saved = False
    problem = ""
    status = 200
    if request.method == "POST":
        # Check the whole form before writing anything: a bad field changes nothing.
        frequency = request.POST.get("frequency") or None
        paused_raw = request.POST.get("paused_until", "").strip()
        paused: dt.datetime | None = None
        if frequency is not None and frequency not in Preference.Frequency.values:
            problem = "Please choose one of the listed frequencies."
        try:
            paused = dt.datetime.combine(dt.date.fromisoformat(paused_raw), dt.time(), dt.UTC) if paused_raw else None
        except ValueError:
            problem = "Please give the pause date as a date (YYYY-MM-DD), or leave it empty."
        if not problem:
            try:
                with transaction.atomic(durable=True):
                    _apply_choices(gate, contact, channel, request)
                    gate.set_preferences(contact, frequency=frequency, paused_until=paused)
                saved = True
            except ApplicationError as exc:  # e.g. the confirmation e-mail cannot be sent: nothing changed
                problem = exc.message[:1].upper() + exc.message[1:] + "."
        status = 422 if problem else 200
    states = _states(contact)
    preference = Preference.objects.filter(contact=contact).first()
    return render(
        request,
        "consent/preferences.html",
        {
            "address": _mask(address_for(contact, channel)),
            "saved": saved,
            "problem": problem,
            "channels": [
                {
                    "channel": c.value,
                    "label": CHANNEL_LABELS[c][:1].upper() + CHANNEL_LABELS[c][1:],
                    "granted": states.get((c.value, Purpose.MARKETING)) == ConsentStatus.GRANTED,
                    "pending": states.get((c.value, Purpose.MARKETING)) == ConsentStatus.PENDING,
                    "service": states.get((c.value, Purpose.TRANSACTIONAL)) != ConsentStatus.WITHDRAWN,
                }
                for c in Channel
                if address_for(contact, c.value)
            ],
            "frequencies": Preference.Frequency.choices,
            "frequency": preference.frequency if preference else Preference.Frequency.ANY,
            "paused_until": preference.paused_until.date().isoformat()
            if preference and preference.paused_until
            else "",
        },
        status=status,
    )


def _states(contact: Contact) -> dict[tuple[str, str], str]:
    """``(channel, purpose) -> status`` of the contact's consent (no row: never asked)."""
    rows = ConsentState.objects.filter(contact=live_contact(contact)).values_list("channel", "purpose", "status")
    return {(channel, purpose): status for channel, purpose, status in rows}


def _apply_choices(gate: MessagingConsentManager, contact: Contact, link_channel: str, request: HttpRequest) -> None:
    """The form's boxes against the recorded state (not the gate's answer: a suppressed or paused
    address still has its consent, and unticking must withdraw it).

    Marketing per channel: ticked and not granted grants, except e-mail reached through a link that
    came by another channel, which asks for double opt-in (nothing yet proves the address is theirs);
    unticked withdraws a grant or a pending request. Service messages (order and delivery updates)
    per channel: unticked withdraws, ticked again restores (lawful basis contract); a form without
    that section (``service_shown``) leaves them as they are.
    """
    states = _states(contact)
    evidence = _evidence(request)
    for option in Channel:
        if not address_for(contact, option.value):
            continue
        wanted = request.POST.get(f"marketing_{option.value}") == "on"
        status = states.get((option.value, Purpose.MARKETING))
        if wanted and status in (None, ConsentStatus.WITHDRAWN):
            if option == Channel.EMAIL and link_channel != Channel.EMAIL:
                gate.request_double_opt_in(contact, option.value, source="preference_center", evidence=evidence)
            else:
                gate.grant_consent(contact, option.value, Purpose.MARKETING, source="preference_center",
                                   evidence=evidence)  # fmt: skip
        elif not wanted and status in (ConsentStatus.GRANTED, ConsentStatus.PENDING):
            gate.withdraw_consent(contact, option.value, Purpose.MARKETING, source="preference_center",
                                  evidence=evidence)  # fmt: skip
        if request.POST.get("service_shown") != "1":
            continue
        service = request.POST.get(f"service_{option.value}") == "on"
        withdrawn = states.get((option.value, Purpose.TRANSACTIONAL)) == ConsentStatus.WITHDRAWN
        if service and withdrawn:
            gate.grant_consent(contact, option.value, Purpose.TRANSACTIONAL, source="preference_center",
                               evidence=evidence, lawful_basis=LawfulBasis.CONTRACT)  # fmt: skip
        elif not service and not withdrawn:
            gate.withdraw_consent(contact, option.value, Purpose.TRANSACTIONAL, source="preference_center",
                                  evidence=evidence)  # fmt: skip


@csrf_exempt  # the signed token authorises the confirmation; there is no session to protect
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Double opt-in. GET only shows the question: mail scanners prefetch links, and a prefetch
    must not subscribe anyone. The POST of the button confirms, with IP and user agent as evidence.
    A tampered, expired or spent link gets a 400 page and changes nothing."""
    gate = MessagingConsentManager()
    try:
        link = gate.read_confirmation_token(token)
        if request.method == "POST":
            gate.confirm_consent(token, evidence=_evidence(request))
    except ApplicationError as exc:
        return render(request, "consent/confirm.html", {"error": exc.message}, status=400)
    context = {
        "address": _mask(address_for(link.contact, link.channel)),
        "store_name": link.contact.store.name,
        "done": request.method == "POST",
        "already": request.method == "GET" and link.status == ConsentStatus.GRANTED,
    }
    return render(request, "consent/confirm.html", context)
