"""Taking an address off the suppression list is recorded, whichever door it goes through."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from conftest import ApiClient
from django.contrib.auth import get_user_model
from django.test import Client

from storeloop.cli.main import main
from storeloop.consent.models import ImmutableError, Suppression, SuppressionRemoval
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import NotFound, ValidationError
from storeloop.stores.models import ApiKey

pytestmark = pytest.mark.django_db
gate = MessagingConsentManager()
ANN = hashlib.sha256(b"ann@example.com").hexdigest()


def removals() -> list[tuple[int, str, str, str, str, str]]:
    return list(
        SuppressionRemoval.objects.order_by("id").values_list(
            "suppression_id", "channel", "address_sha256", "reason", "note", "actor"
        )
    )


def test_unsuppress_removes_and_records(store: Any) -> None:
    contact = Contact.objects.create(store=store, email="ann@example.com")
    gate.suppress(store.pk, "email", "ann@example.com", "hard_bounce", "550 5.1.1 user unknown")
    row = Suppression.objects.get()
    assert gate.has_consent(contact, "email", "transactional").reason == "suppressed:hard_bounce"

    removal = gate.unsuppress(store.pk, "email", " ANN@Example.com ", "mailbox fixed, customer called", "support:eve")
    assert not Suppression.objects.exists()
    assert gate.has_consent(contact, "email", "transactional").allowed
    assert removals() == [(row.pk, "email", ANN, "hard_bounce", "mailbox fixed, customer called", "support:eve")]
    assert (removal.store_id, removal.suppressed_at) == (store.pk, row.created_at)
    assert removal.removed_at >= row.created_at
    # The bounce text (which may name the address) is not copied into the record.
    # (Its text fields: a timestamp's microseconds may well contain "550".)
    texts = [v for v in SuppressionRemoval.objects.values().get().values() if isinstance(v, str)]
    assert texts
    assert not [text for text in texts if "550" in text]


def test_removing_what_is_not_there_records_nothing(store: Any, other_store: Any) -> None:
    gate.suppress(other_store.pk, "email", "ann@example.com", "complaint")
    with pytest.raises(NotFound) as missing:
        gate.unsuppress(store.pk, "email", "ann@example.com", "", "cli")
    assert missing.value.code == "suppression_not_found"
    with pytest.raises(ValidationError) as bad:
        gate.unsuppress(store.pk, "fax", "ann@example.com", "", "cli")
    assert bad.value.code == "invalid_channel"
    assert Suppression.objects.count() == 1
    assert not SuppressionRemoval.objects.exists()


def test_the_record_is_append_only(store: Any) -> None:
    gate.suppress(store.pk, "sms", "+447700900123", "provider_opt_out")
    removal = gate.unsuppress(store.pk, "sms", "+44 7700 900123", "re-subscribed by START", "cli")
    removal.note = "forged"
    with pytest.raises(ImmutableError):
        removal.save()
    with pytest.raises(ImmutableError):
        removal.delete()
    assert SuppressionRemoval.objects.get().note == "re-subscribed by START"


# --- API -----------------------------------------------------------------------------------------


def test_api_delete_is_recorded_and_listed(api: ApiClient, store: Any) -> None:
    gate.suppress(store.pk, "email", "ann@example.com", "complaint")
    gate.suppress(store.pk, "email", "bob@example.com", "manual")
    ann = Suppression.objects.get(address="ann@example.com")
    response = api.client.delete(f"/api/v1/suppressions/{ann.pk}?reason=asked+to+be+mailed+again",
                                 headers=api._headers())  # fmt: skip
    assert response.status_code == 204
    prefix = ApiKey.objects.get().prefix
    assert removals() == [(ann.pk, "email", ANN, "complaint", "asked to be mailed again", f"api-key:{prefix}")]
    listed = api.get("/api/v1/suppressions/removals").json()
    assert listed["count"] == 1
    assert listed["items"][0] | {"suppressed_at": None, "removed_at": None} == {
        "id": SuppressionRemoval.objects.get().pk, "suppression_id": ann.pk, "channel": "email",
        "address_sha256": ANN, "reason": "complaint", "suppressed_at": None, "note": "asked to be mailed again",
        "actor": f"api-key:{prefix}", "removed_at": None,
    }  # fmt: skip
    assert api.get("/api/v1/suppressions/removals", address="Ann@Example.com").json()["count"] == 1
    assert api.get("/api/v1/suppressions/removals", address="bob@example.com").json()["count"] == 0
    assert api.get("/api/v1/suppressions/removals", channel="sms").json()["count"] == 0
    assert api.get("/api/v1/suppressions/removals", channel="fax").json()["code"] == "invalid_channel"
    assert list(Suppression.objects.values_list("address", flat=True)) == ["bob@example.com"]


def test_api_delete_without_a_reason_and_a_reason_too_long(api: ApiClient, store: Any) -> None:
    gate.suppress(store.pk, "email", "ann@example.com", "manual")
    row = Suppression.objects.get()
    too_long = api.client.delete(f"/api/v1/suppressions/{row.pk}?reason={'x' * 501}", headers=api._headers())
    assert (too_long.status_code, too_long.json()["code"]) == (422, "validation_error")
    assert Suppression.objects.exists()
    assert api.client.delete(f"/api/v1/suppressions/{row.pk}", headers=api._headers()).status_code == 204
    assert [r[4] for r in removals()] == [""]


def test_another_stores_removal_is_invisible_and_its_suppression_untouchable(
    api: ApiClient, api_for: Any, store: Any, other_store: Any
) -> None:
    gate.suppress(other_store.pk, "email", "ann@example.com", "manual")
    theirs = Suppression.objects.get()
    response = api.client.delete(f"/api/v1/suppressions/{theirs.pk}", headers=api._headers())
    assert (response.status_code, response.json()["code"]) == (404, "suppression_not_found")
    assert Suppression.objects.filter(pk=theirs.pk).exists()
    assert not SuppressionRemoval.objects.exists()
    other = api_for(other_store)
    assert other.client.delete(f"/api/v1/suppressions/{theirs.pk}", headers=other._headers()).status_code == 204
    assert api.get("/api/v1/suppressions/removals").json()["count"] == 0
    assert other.get("/api/v1/suppressions/removals").json()["count"] == 1
    assert Client().get("/api/v1/suppressions/removals").status_code == 401


# --- CLI and admin -------------------------------------------------------------------------------


def test_cli_remove_is_recorded(capsys: Any, store: Any) -> None:
    gate.suppress(store.pk, "email", "ann@example.com", "hard_bounce")
    row = Suppression.objects.get()
    code = main(["suppression", "remove", "--store", str(store.pk), "--channel", "email", "--address",
                 "ANN@example.com", "--reason", "typo fixed at checkout"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "recorded as #" in out
    assert "ann@example.com" not in out
    assert removals() == [(row.pk, "email", ANN, "hard_bounce", "typo fixed at checkout", "cli")]
    again = main(["suppression", "remove", "--store", str(store.pk), "--channel", "email", "--address",
                  "ann@example.com"])  # fmt: skip
    assert (again, "suppression_not_found" in capsys.readouterr().err) == (2, True)
    assert len(removals()) == 1


@pytest.fixture
def admin_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "", "a-long-password-1")
    client = Client()
    client.login(username="root", password="a-long-password-1")
    return client


def test_admin_delete_and_bulk_delete_are_recorded(admin_client: Client, store: Any) -> None:
    for address in ("ann@example.com", "bob@example.com", "cy@example.com"):
        gate.suppress(store.pk, "email", address, "manual")
    ann, bob, cy = Suppression.objects.order_by("address")
    page = admin_client.post(f"/admin/consent/suppression/{ann.pk}/delete/", {"post": "yes"})
    assert page.status_code == 302
    selection = {"action": "delete_selected", "_selected_action": [bob.pk, cy.pk], "post": "yes"}
    bulk = admin_client.post("/admin/consent/suppression/", selection)
    assert bulk.status_code == 302
    assert not Suppression.objects.exists()
    assert sorted((r[0], r[4], r[5]) for r in removals()) == [
        (ann.pk, "removed in the admin", "admin:root"),
        (bob.pk, "removed in the admin", "admin:root"),
        (cy.pk, "removed in the admin", "admin:root"),
    ]
    listing = admin_client.get("/admin/consent/suppressionremoval/")
    assert listing.status_code == 200
    assert "admin:root" in listing.content.decode()
    removal = SuppressionRemoval.objects.first()
    assert removal is not None
    assert (
        admin_client.post(f"/admin/consent/suppressionremoval/{removal.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert SuppressionRemoval.objects.count() == 3
