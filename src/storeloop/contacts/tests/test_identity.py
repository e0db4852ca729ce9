from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import IntegrityError, connections, transaction
from hypothesis import given
from hypothesis import strategies as st

from storeloop.contacts.models import Contact, ContactIdentity, ContactMerge
from storeloop.contacts.normalize import normalize_email, normalize_phone
from storeloop.contacts.services import PersonData, merge_contacts, resolve_contact
from storeloop.core.errors import ValidationError
from storeloop.orders.models import Order


def person(**kw: Any) -> PersonData:
    return PersonData.from_raw(
        email=kw.get("email"),
        phone=kw.get("phone"),
        country=kw.get("country", "GB"),
        woo_customer_id=kw.get("customer"),
        first_name=kw.get("first", ""),
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John.Doe@Example.COM", "john.doe@example.com"),
        ("  Zoë@Exämple.de ", "zoë@exämple.de"),
        ("not-an-email", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_email(raw: str | None, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("07700 900123", "GB", "+447700900123"),
        ("+44 7700 900123", "DE", "+447700900123"),
        ("0049-30-123456", "FR", "+4930123456"),
        ("(030) 1234567", "DE", "+49301234567"),
        ("12", "DE", None),
        ("call me", "DE", None),
    ],
)
def test_normalize_phone(raw: str, region: str, expected: str | None) -> None:
    assert normalize_phone(raw, region) == expected


@given(st.emails())
def test_normalised_email_is_idempotent(email: str) -> None:
    once = normalize_email(email)
    if once is not None:
        assert normalize_email(once) == once


@pytest.mark.django_db
def test_one_contact_per_identity_whatever_the_path(store: Any) -> None:
    with transaction.atomic():
        a = resolve_contact(store, person(email="ann@example.com", phone="07700 900123"))
        b = resolve_contact(store, person(email="ANN@example.com"))
        c = resolve_contact(store, person(customer=9, email="ann@example.com"))
    assert a is not None
    assert a == b == c
    assert Contact.objects.count() == 1
    assert set(ContactIdentity.objects.values_list("kind", "value")) == {
        ("email", "ann@example.com"),
        ("phone", "+447700900123"),
        ("woo_customer", "9"),
    }


@pytest.mark.django_db
def test_a_shared_phone_does_not_merge_two_emails(store: Any) -> None:
    with transaction.atomic():
        a = resolve_contact(store, person(email="a@example.com", phone="07700 900123"))
        b = resolve_contact(store, person(email="b@example.com", phone="07700 900123"))
    assert a != b
    assert ContactIdentity.objects.get(kind="phone").contact == a


@pytest.mark.django_db
def test_identities_are_per_store(store: Any, other_store: Any) -> None:
    with transaction.atomic():
        a = resolve_contact(store, person(email="a@example.com"))
        b = resolve_contact(other_store, person(email="a@example.com"))
    assert a != b


@pytest.mark.django_db
def test_the_database_refuses_a_duplicate_identity(store: Any) -> None:
    with transaction.atomic():
        contact = resolve_contact(store, person(email="a@example.com"))
        other = Contact.objects.create(store=store)
    with pytest.raises(IntegrityError), transaction.atomic():
        ContactIdentity.objects.create(store=store, contact=other, kind="email", value="a@example.com")
    assert ContactIdentity.objects.get(kind="email").contact == contact


@pytest.mark.django_db(transaction=True)
def test_concurrent_creators_end_with_one_contact(store: Any) -> None:
    barrier = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                contact = resolve_contact(store, person(email="race@example.com", customer=77))
            assert contact is not None
            results.append(contact.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Contact.objects.filter(store=store).count() == 1
    assert set(results) == {Contact.objects.get().pk}


@pytest.mark.django_db
def test_merge_moves_identities_and_orders_and_is_recorded(store: Any) -> None:
    with transaction.atomic():
        a = resolve_contact(store, person(email="a@example.com"))
        b = resolve_contact(store, person(email="b@example.com", phone="07700 900123"))
    assert a is not None
    assert b is not None
    import datetime as dt

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    Order.objects.create(
        store=store,
        external_id=1,
        contact=b,
        status="completed",
        currency="EUR",
        total=5,
        date_created=now,
        date_modified=now,
    )
    merge = merge_contacts(store=store, source_id=b.pk, target_id=a.pk, reason="same person", actor="admin")
    assert (merge.moved_identities, merge.moved_orders) == (2, 1)
    b.refresh_from_db()
    assert b.merged_into_id == a.pk
    assert set(ContactIdentity.objects.filter(contact=a).values_list("value", flat=True)) == {
        "a@example.com",
        "b@example.com",
        "+447700900123",
    }
    assert Order.objects.get().contact_id == a.pk
    # The merged-away contact now resolves to the survivor.
    with transaction.atomic():
        assert resolve_contact(store, person(email="b@example.com")) == a
    assert ContactMerge.objects.count() == 1


@pytest.mark.django_db
def test_merge_refuses_bad_requests_and_changes_nothing(store: Any, other_store: Any) -> None:
    with transaction.atomic():
        a = resolve_contact(store, person(email="a@example.com"))
        foreign = resolve_contact(other_store, person(email="f@example.com"))
    assert a is not None
    assert foreign is not None
    with pytest.raises(ValidationError) as same:
        merge_contacts(store=store, source_id=a.pk, target_id=a.pk, reason="x", actor="t")
    assert same.value.code == "merge_same_contact"
    with pytest.raises(ValidationError) as cross:
        merge_contacts(store=store, source_id=foreign.pk, target_id=a.pk, reason="x", actor="t")
    assert cross.value.code == "merge_contact_not_found"
    assert ContactMerge.objects.count() == 0
    assert ContactIdentity.objects.get(value="f@example.com").contact == foreign


@given(
    st.one_of(
        st.emails(),
        st.from_regex(r"[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9.-]{1,20}\.[A-Za-z]{2,6}", fullmatch=True),
    )
)
def test_the_fast_email_path_agrees_with_email_validator(raw: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    try:
        slow: str | None = validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        slow = None
    assert normalize_email.__wrapped__(raw) == slow
