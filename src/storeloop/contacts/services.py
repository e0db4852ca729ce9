"""Finding or creating the one contact behind an email / phone / customer id, and merging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.db import IntegrityError, connection, transaction

from storeloop.contacts.models import Contact, ContactIdentity, ContactMerge
from storeloop.contacts.normalize import normalize_email, normalize_phone
from storeloop.core.errors import ValidationError
from storeloop.stores.models import Store

Kind = ContactIdentity.Kind


@dataclass(frozen=True)
class PersonData:
    email: str | None = None
    phone: str | None = None
    woo_customer_id: int | None = None
    first_name: str = ""
    last_name: str = ""
    country: str = ""

    @classmethod
    def from_raw(
        cls,
        *,
        email: str | None,
        phone: str | None,
        country: str | None,
        woo_customer_id: int | None = None,
        first_name: str = "",
        last_name: str = "",
    ) -> PersonData:
        region = (country or "").upper()[:2]
        return cls(
            email=normalize_email(email),
            phone=normalize_phone(phone, region),
            woo_customer_id=woo_customer_id or None,
            first_name=(first_name or "")[:200],
            last_name=(last_name or "")[:200],
            country=region,
        )

    def identities(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.woo_customer_id:
            out.append((Kind.WOO_CUSTOMER, str(self.woo_customer_id)))
        if self.email:
            out.append((Kind.EMAIL, self.email))
        if self.phone:
            out.append((Kind.PHONE, self.phone))
        return out


def identities_held(store: Store, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Which of these (kind, value) identities exist in the store, and whose they are.

    One query per kind, so the (store, kind, value) unique index is used for every lookup.
    """
    by_kind: dict[str, set[str]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, set()).add(value)
    held: dict[tuple[str, str], int] = {}
    table = connection.ops.quote_name(ContactIdentity._meta.db_table)
    with connection.cursor() as cursor:
        for kind, value_set in by_kind.items():
            values = sorted(value_set)
            for start in range(0, len(values), 500):
                chunk = values[start : start + 500]
                # Plain SQL: the backfill asks this for every page, and building the ORM query
                # cost more than the index lookups themselves.
                cursor.execute(
                    f"SELECT value, contact_id FROM {table} WHERE store_id = %s AND kind = %s "  # noqa: S608
                    f"AND value IN ({', '.join(['%s'] * len(chunk))})",
                    [store.pk, kind, *chunk],
                )
                held.update(((kind, value), contact_id) for value, contact_id in cursor.fetchall())
    return held


def _live(contact: Contact) -> Contact:
    seen = 0
    while contact.merged_into_id is not None and seen < 20:
        contact = Contact.objects.get(pk=contact.merged_into_id)
        seen += 1
    return contact


def match_keys(person: PersonData) -> list[tuple[str, str]]:
    # Priority: the shop's own customer id, then email. Phone only when nothing else is known:
    # households share phones, so a phone alone must not fold two emails into one person.
    keys = [(k, v) for k, v in person.identities() if k != Kind.PHONE]
    if not keys and person.phone:
        keys = [(Kind.PHONE, person.phone)]
    return keys


def _find(store: Store, person: PersonData) -> Contact | None:
    for kind, value in match_keys(person):
        identity = ContactIdentity.objects.select_related("contact").filter(store=store, kind=kind, value=value).first()
        if identity is not None:
            return _live(identity.contact)
    return None


def resolve_contact(store: Store, person: PersonData) -> Contact | None:
    """Return the contact for ``person``, creating it and attaching new identities.

    Must run inside a transaction. Safe under concurrency: the identity unique constraint decides
    a race, the loser re-reads and finds the winner's contact.
    """
    if not person.identities():
        return None
    for _ in range(3):
        contact = _find(store, person)
        try:
            with transaction.atomic():
                created = contact is None
                if contact is None:
                    contact = Contact.objects.create(
                        store=store,
                        email=person.email or "",
                        phone=person.phone or "",
                        woo_customer_id=person.woo_customer_id,
                        first_name=person.first_name,
                        last_name=person.last_name,
                        country=person.country,
                    )
                taken = _attach_identities(store, contact, person)
                if created and taken & set(match_keys(person)):
                    # Another writer committed one of these identities after our lookup: its
                    # contact is the person. Undo ours and read again.
                    raise _LostRace
                _refresh_fields(contact, person)
            return contact
        except (IntegrityError, _LostRace):
            continue  # another writer created the identity first: read again
    raise RuntimeError("contact resolution did not settle after 3 attempts")


class _LostRace(Exception):
    pass


def _attach_identities(store: Store, contact: Contact, person: PersonData) -> set[tuple[str, str]]:
    """Attach the identities nobody holds yet; returns those already held."""
    existing = set(identities_held(store, person.identities()))
    for kind, value in person.identities():
        if (kind, value) in existing:
            continue  # already someone's (maybe this contact's); never steal an identity
        ContactIdentity.objects.create(store=store, contact=contact, kind=kind, value=value)
    return existing


def _refresh_fields(contact: Contact, person: PersonData) -> None:
    changed = refresh_contact_fields(contact, person)
    if changed:
        contact.save(update_fields=[*changed, "updated_at"])


class ContactFields(Protocol):
    """What ``refresh_contact_fields`` reads and sets: a ``Contact``, or a bulk path's draft of one."""

    email: str
    phone: str
    woo_customer_id: int | None
    first_name: str
    last_name: str
    country: str


def refresh_contact_fields(contact: ContactFields, person: PersonData) -> list[str]:
    """Bring a known contact up to date with a new sighting of the person; returns the changed fields.

    Name and country follow the latest sighting; email, phone and customer id only fill blanks.
    """
    changed: list[str] = []
    for field in ("first_name", "last_name", "country"):
        value = getattr(person, field)
        if value and getattr(contact, field) != value:
            setattr(contact, field, value)
            changed.append(field)
    if person.email and not contact.email:
        contact.email = person.email
        changed.append("email")
    if person.phone and not contact.phone:
        contact.phone = person.phone
        changed.append("phone")
    if person.woo_customer_id and not contact.woo_customer_id:
        contact.woo_customer_id = person.woo_customer_id
        changed.append("woo_customer_id")
    return changed


def merge_contacts(*, store: Store, source_id: int, target_id: int, reason: str, actor: str) -> ContactMerge:
    """Fold ``source`` into ``target``: identities and orders move, the source is marked merged.

    ``target`` takes the email and phone it lacks from ``source``, and consent is carried by the
    rules of ``consent.merge.carry_consent`` (a withdrawal or a complaint on either side is never
    lost; a grant only counts for the address it was given for); see docs/consent.md.
    """
    from storeloop.consent.services import MessagingConsentManager  # consent depends on contacts
    from storeloop.orders.models import Order  # orders depend on contacts, not the other way round

    if source_id == target_id:
        raise ValidationError("cannot merge a contact into itself", code="merge_same_contact")
    if not reason.strip():
        raise ValidationError("a merge needs a reason", code="merge_reason_required")
    with transaction.atomic(durable=True):
        contacts = {
            c.pk: c for c in Contact.objects.select_for_update().filter(store=store, pk__in=[source_id, target_id])
        }
        if len(contacts) != 2:
            raise ValidationError("both contacts must exist in this store", code="merge_contact_not_found")
        source, target = contacts[source_id], contacts[target_id]
        if source.merged_into_id is not None or target.merged_into_id is not None:
            raise ValidationError("a contact that was merged away cannot take part in a merge", code="merge_stale")
        moved_identities = ContactIdentity.objects.filter(contact=source).update(contact=target)
        moved_orders = Order.objects.filter(store=store, contact=source).update(contact=target)
        filled = [f for f in ("email", "phone") if getattr(source, f) and not getattr(target, f)]
        for field in filled:
            setattr(target, field, getattr(source, field))
        if filled:
            target.save(update_fields=[*filled, "updated_at"])
        source.merged_into = target
        source.save(update_fields=["merged_into", "updated_at"])
        MessagingConsentManager().carry_consent_on_merge(source=source, target=target, actor=actor)
        from storeloop.metrics.services import OrderMetricsUpdater  # orders moved: recount both sides

        updater = OrderMetricsUpdater()
        updater.update_contact_metrics(source.pk)
        updater.update_contact_metrics(target.pk)
        return ContactMerge.objects.create(
            store=store,
            source=source,
            target=target,
            reason=reason.strip()[:500],
            actor=actor[:150],
            moved_identities=moved_identities,
            moved_orders=moved_orders,
        )
