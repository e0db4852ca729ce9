"""The consent and suppression API: state, gate answer and ledger; changes with evidence; access."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import ApiClient
from django.test import Client
from django.utils import timezone

from storeloop.consent.models import ConsentEvent, ConsentState, Suppression
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.stores.models import ApiKey

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
EVIDENCE = {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "where": "https://shop.example/checkout",
            "wording": "Send me offers by email"}  # fmt: skip
GRANT = {"action": "grant", "channel": "email", "purpose": "marketing", "source": "checkout", "evidence": EVIDENCE}


@pytest.fixture
def contact(store: Any) -> Contact:
    return Contact.objects.create(store=store, email="ann@example.com", phone="+447700900123")


def gate_of(body: dict[str, Any]) -> dict[tuple[str, str], tuple[bool, str]]:
    return {(g["channel"], g["purpose"]): (g["allowed"], g["reason"]) for g in body["can_send"]}


def nothing_written() -> None:
    assert not ConsentEvent.objects.exists()
    assert not ConsentState.objects.exists()


# --- reading -------------------------------------------------------------------------------------


def test_a_new_contacts_consent(api: ApiClient, contact: Contact) -> None:
    body = api.get(f"/api/v1/contacts/{contact.pk}/consent").json()
    assert body == {
        "contact_id": contact.pk, "states": [], "suppressions": [], "history": [],
        "preference": {"frequency": "any", "paused_until": None},
        "can_send": [
            {"channel": channel, "purpose": purpose, "allowed": purpose == "transactional",
             "reason": "contract" if purpose == "transactional" else "no_consent"}
            for channel in ("email", "sms", "whatsapp") for purpose in ("transactional", "marketing")
        ],
    }  # fmt: skip


def test_state_ledger_suppression_and_preference_together(api: ApiClient, store: Any, contact: Contact) -> None:
    gate = MessagingConsentManager()
    gate.grant_consent(contact, "sms", "marketing", source="checkout", evidence={"ip": "198.51.100.1"},
                       occurred_at=T0)  # fmt: skip
    gate.withdraw_consent(contact, "sms", "marketing", source="sms_keyword", occurred_at=T0 + dt.timedelta(days=1))
    gate.suppress(store.pk, "email", "Ann@Example.com", "hard_bounce", "550 5.1.1")
    gate.set_preferences(contact, frequency="weekly")
    body = api.get(f"/api/v1/contacts/{contact.pk}/consent").json()
    assert [(s["channel"], s["purpose"], s["status"], s["source"]) for s in body["states"]] == [
        ("sms", "marketing", "withdrawn", "sms_keyword")
    ]
    assert [(e["action"], e["source"], e["evidence"], e["occurred_at"]) for e in body["history"]] == [
        ("grant", "checkout", {"ip": "198.51.100.1"}, "2026-03-01T12:00:00Z"),
        ("withdraw", "sms_keyword", {}, "2026-03-02T12:00:00Z"),
    ]
    assert [(s["channel"], s["address"], s["reason"]) for s in body["suppressions"]] == [
        ("email", "ann@example.com", "hard_bounce")
    ]
    assert body["preference"] == {"frequency": "weekly", "paused_until": None}
    gate_answers = gate_of(body)
    assert gate_answers[("email", "transactional")] == (False, "suppressed:hard_bounce")
    assert gate_answers[("sms", "marketing")] == (False, "withdrawn")
    assert gate_answers[("sms", "transactional")] == (True, "contract")


def test_a_merged_away_contact_answers_for_the_one_it_joined(api: ApiClient, store: Any, contact: Contact) -> None:
    old = Contact.objects.create(store=store, email="ann.old@example.com", merged_into=contact)
    MessagingConsentManager().grant_consent(contact, "email", "marketing", source="form", evidence={"ip": "::1"})
    body = api.get(f"/api/v1/contacts/{old.pk}/consent").json()
    assert body["contact_id"] == contact.pk
    assert gate_of(body)[("email", "marketing")] == (True, "consent")


# --- changing ------------------------------------------------------------------------------------


def test_grant_with_evidence_records_the_ledger_and_opens_the_gate(api: ApiClient, contact: Contact) -> None:
    response = api.post(f"/api/v1/contacts/{contact.pk}/consent", {**GRANT, "occurred_at": "2026-03-01T12:00:00Z"})
    assert response.status_code == 201
    body = response.json()
    event = ConsentEvent.objects.get()
    prefix = ApiKey.objects.get().prefix
    assert body["event"] | {"recorded_at": None} == {
        "id": event.pk, "channel": "email", "purpose": "marketing", "action": "grant", "lawful_basis": "consent",
        "source": "checkout", "evidence": {**EVIDENCE, "via": f"api-key:{prefix}"},
        "occurred_at": "2026-03-01T12:00:00Z", "recorded_at": None,
    }  # fmt: skip
    assert body["state"] | {"updated_at": None} == {
        "channel": "email", "purpose": "marketing", "status": "granted", "lawful_basis": "consent",
        "source": "checkout", "updated_at": None, "last_event_id": event.pk,
    }  # fmt: skip
    assert body["can_send"] == {"channel": "email", "purpose": "marketing", "allowed": True, "reason": "consent"}
    assert (body["contact_id"], event.contact_id, event.evidence["ip"]) == (contact.pk, contact.pk, "203.0.113.7")
    assert MessagingConsentManager().has_consent(contact, "email", "marketing").allowed


def test_withdraw_closes_the_gate(api: ApiClient, contact: Contact) -> None:
    api.post(f"/api/v1/contacts/{contact.pk}/consent", GRANT)
    withdraw = {"action": "withdraw", "channel": "email", "purpose": "marketing", "source": "phone_call"}
    response = api.post(f"/api/v1/contacts/{contact.pk}/consent", withdraw)
    assert response.status_code == 201
    assert response.json()["state"]["status"] == "withdrawn"
    assert response.json()["can_send"]["reason"] == "withdrawn"
    assert list(ConsentEvent.objects.order_by("id").values_list("action", flat=True)) == ["grant", "withdraw"]


def test_double_opt_in_stays_pending(api: ApiClient, contact: Contact) -> None:
    body = api.post(f"/api/v1/contacts/{contact.pk}/consent", {**GRANT, "double_opt_in": True}).json()
    assert (body["event"]["action"], body["state"]["status"]) == ("request", "pending")
    assert body["can_send"]["reason"] == "pending_confirmation"


def test_an_older_event_is_evidence_and_leaves_the_state(api: ApiClient, contact: Contact) -> None:
    api.post(f"/api/v1/contacts/{contact.pk}/consent", GRANT)
    late = {"action": "withdraw", "channel": "email", "purpose": "marketing", "source": "import",
            "occurred_at": "2020-01-01T00:00:00Z"}  # fmt: skip
    body = api.post(f"/api/v1/contacts/{contact.pk}/consent", late).json()
    assert body["event"]["action"] == "withdraw"
    assert body["state"]["status"] == "granted"
    assert ConsentEvent.objects.count() == 2


def test_contract_basis_needs_no_evidence(api: ApiClient, contact: Contact) -> None:
    payload = {"action": "grant", "channel": "sms", "purpose": "transactional", "source": "checkout",
               "lawful_basis": "contract"}  # fmt: skip
    response = api.post(f"/api/v1/contacts/{contact.pk}/consent", payload)
    assert response.status_code == 201
    assert response.json()["event"]["lawful_basis"] == "contract"


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"evidence": None}, "evidence_required", "evidence"),
        ({"evidence": {}}, "evidence_required", "evidence"),
        ({"evidence": {"ip": "not-an-ip"}}, "validation_error", "payload.evidence.ip"),
        ({"evidence": {"ip": "1.2.3.4", "cookie": "x"}}, "validation_error", "payload.evidence.cookie"),
        ({"action": "withdraw", "lawful_basis": "consent"}, "invalid_consent_change", "lawful_basis"),
        ({"purpose": "transactional", "double_opt_in": True}, "invalid_consent_change", "double_opt_in"),
        ({"occurred_at": "2026-03-01T12:00:00"}, "invalid_time", "occurred_at"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "invalid_time", "occurred_at"),
        # Both overflow on their way to UTC (a 500 before): refused at the door.
        ({"occurred_at": "0001-01-01T00:00:00+05:00"}, "validation_error", "payload.occurred_at"),
        ({"occurred_at": "9999-12-31T23:00:00-05:00"}, "validation_error", "payload.occurred_at"),
        ({"source": "Checkout Page!"}, "validation_error", "payload.source"),
        ({"channel": "fax"}, "validation_error", "payload.channel"),
        ({"purpose": "spam"}, "validation_error", "payload.purpose"),
        ({"action": "maybe"}, "validation_error", "payload.action"),
        ({"lawful_basis": "because"}, "validation_error", "payload.lawful_basis"),
    ],
)
def test_bad_changes_are_422_and_write_nothing(
    api: ApiClient, contact: Contact, change: dict[str, Any], code: str, field: str
) -> None:
    response = api.post(f"/api/v1/contacts/{contact.pk}/consent", {**GRANT, **change})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == code
    assert field in [d["field"] for d in body["details"]]
    nothing_written()


def test_another_stores_contact_is_404_and_untouched(api: ApiClient, other_store: Any) -> None:
    theirs = Contact.objects.create(store=other_store, email="bob@example.com")
    assert api.get(f"/api/v1/contacts/{theirs.pk}/consent").status_code == 404
    response = api.post(f"/api/v1/contacts/{theirs.pk}/consent", GRANT)
    assert response.status_code == 404
    assert response.json()["code"] == "contact_not_found"
    nothing_written()


@pytest.mark.parametrize("method", ["get", "post"])
def test_consent_endpoints_need_a_key(contact: Contact, method: str) -> None:
    url = f"/api/v1/contacts/{contact.pk}/consent"
    client = Client()
    response = client.get(url) if method == "get" else client.post(url, GRANT, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    nothing_written()


# --- suppressions --------------------------------------------------------------------------------


def test_add_normalises_and_is_idempotent(api: ApiClient, store: Any, contact: Contact) -> None:
    payload = {"channel": "email", "address": " Ann@Example.com ", "reason": "complaint", "detail": "ARF"}
    first = api.post("/api/v1/suppressions", payload)
    assert first.status_code == 201
    row = Suppression.objects.get()
    assert first.json() | {"created_at": None} == {
        "id": row.pk, "channel": "email", "address": "ann@example.com", "reason": "complaint", "detail": "ARF",
        "created_at": None,
    }  # fmt: skip
    again = api.post("/api/v1/suppressions", {**payload, "reason": "manual", "detail": "again"})
    assert again.status_code == 200
    assert again.json()["id"] == row.pk
    assert (Suppression.objects.count(), Suppression.objects.get().reason) == (1, "complaint")
    assert MessagingConsentManager().has_consent(contact, "email", "transactional").reason == "suppressed:complaint"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"channel": "email", "address": "not-an-address"}, "invalid_address"),
        ({"channel": "sms", "address": "call me"}, "invalid_address"),
        ({"channel": "fax", "address": "ann@example.com"}, "validation_error"),
        ({"channel": "email", "address": "ann@example.com", "reason": "dislike"}, "validation_error"),
        ({"channel": "email", "address": ""}, "validation_error"),
        ({"channel": "email", "address": "ann@example.com", "detail": "x" * 501}, "validation_error"),
        ({"channel": "email", "address": "ann@example.com", "store": 2}, "validation_error"),
    ],
)
def test_bad_suppressions_are_422_and_write_nothing(api: ApiClient, store: Any, payload: Any, code: str) -> None:
    response = api.post("/api/v1/suppressions", payload)
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert not Suppression.objects.exists()


def test_list_filters_get_and_remove(api: ApiClient, store: Any, other_store: Any, contact: Contact) -> None:
    gate = MessagingConsentManager()
    gate.suppress(store.pk, "email", "ann@example.com", "hard_bounce")
    gate.suppress(store.pk, "sms", "+447700900123", "provider_opt_out")
    gate.suppress(store.pk, "email", "bob@example.com", "manual")
    gate.suppress(other_store.pk, "email", "ann@example.com", "manual")

    def addresses(**params: Any) -> list[str]:
        return [s["address"] for s in api.get("/api/v1/suppressions", **params).json()["items"]]

    assert addresses() == ["bob@example.com", "+447700900123", "ann@example.com"]
    assert addresses(channel="email") == ["bob@example.com", "ann@example.com"]
    assert addresses(reason="provider_opt_out") == ["+447700900123"]
    assert addresses(address="ANN@example.com") == ["ann@example.com"]
    assert addresses(address="nobody") == []
    assert api.get("/api/v1/suppressions", limit=1).json()["next_offset"] == 1
    assert api.get("/api/v1/suppressions", channel="fax").json()["code"] == "invalid_channel"
    assert api.get("/api/v1/suppressions", reason="whim").json()["code"] == "invalid_reason"

    row = Suppression.objects.get(store=store, address="ann@example.com")
    assert api.get(f"/api/v1/suppressions/{row.pk}").json()["reason"] == "hard_bounce"
    assert MessagingConsentManager().has_consent(contact, "email", "transactional").allowed is False
    removed = api.client.delete(f"/api/v1/suppressions/{row.pk}", headers=api._headers())
    assert removed.status_code == 204
    assert not Suppression.objects.filter(pk=row.pk).exists()
    assert MessagingConsentManager().has_consent(contact, "email", "transactional").allowed is True
    again = api.client.delete(f"/api/v1/suppressions/{row.pk}", headers=api._headers())
    assert again.status_code == 404
    assert again.json()["code"] == "suppression_not_found"


def test_another_stores_suppression_is_404_and_stays(api: ApiClient, other_store: Any) -> None:
    MessagingConsentManager().suppress(other_store.pk, "email", "ann@example.com", "manual")
    theirs = Suppression.objects.get()
    assert api.get(f"/api/v1/suppressions/{theirs.pk}").status_code == 404
    assert api.client.delete(f"/api/v1/suppressions/{theirs.pk}", headers=api._headers()).status_code == 404
    assert api.get("/api/v1/suppressions").json()["count"] == 0
    assert Suppression.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize("method", ["list", "add", "get", "delete"])
def test_suppression_endpoints_need_a_key(store: Any, method: str) -> None:
    MessagingConsentManager().suppress(store.pk, "email", "ann@example.com", "manual")
    row = Suppression.objects.get()
    client = Client()
    response = {
        "list": lambda: client.get("/api/v1/suppressions"),
        "add": lambda: client.post("/api/v1/suppressions", {"channel": "email", "address": "bob@example.com"},
                                   content_type="application/json"),
        "get": lambda: client.get(f"/api/v1/suppressions/{row.pk}"),
        "delete": lambda: client.delete(f"/api/v1/suppressions/{row.pk}"),
    }[method]()  # fmt: skip
    assert response.status_code == 401
    assert list(Suppression.objects.values_list("address", flat=True)) == ["ann@example.com"]


def test_future_check_uses_the_clock(api: ApiClient, contact: Contact) -> None:
    soon = (timezone.now() + dt.timedelta(minutes=1)).isoformat()
    assert api.post(f"/api/v1/contacts/{contact.pk}/consent", {**GRANT, "occurred_at": soon}).status_code == 201
