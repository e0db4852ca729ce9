from __future__ import annotations

from django.db.models import Count, QuerySet

from storeloop.contacts.models import Contact
from storeloop.core.errors import NotFound
from storeloop.stores.models import Store


def contact_list(*, store: Store, email: str | None = None) -> QuerySet[Contact]:
    qs = (
        Contact.objects.filter(store=store, merged_into__isnull=True)
        .annotate(order_count=Count("orders"))
        .order_by("-id")
    )
    if email:
        qs = qs.filter(identities__kind="email", identities__value=email.strip().lower())
    return qs


def contact_get_for_store(*, store: Store, contact_id: int) -> Contact:
    contact = (
        Contact.objects.filter(store=store, pk=contact_id)
        .annotate(order_count=Count("orders"))
        .prefetch_related("identities")
        .first()
    )
    if contact is None:
        raise NotFound(f"no contact {contact_id} in this store", code="contact_not_found")
    return contact
