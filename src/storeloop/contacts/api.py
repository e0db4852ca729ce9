from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema

from storeloop.config.auth import request_store
from storeloop.contacts.models import Contact
from storeloop.contacts.selectors import contact_get_for_store, contact_list
from storeloop.contacts.services import merge_contacts
from storeloop.core.pagination import paginate

router = Router(tags=["contacts"])


class IdentityOut(Schema):
    kind: str
    value: str


class ContactOut(Schema):
    id: int
    email: str
    phone: str
    first_name: str
    last_name: str
    country: str
    woo_customer_id: int | None
    order_count: int
    merged_into: int | None

    @staticmethod
    def of(contact: Contact) -> ContactOut:
        return ContactOut(
            id=contact.pk,
            email=contact.email,
            phone=contact.phone,
            first_name=contact.first_name,
            last_name=contact.last_name,
            country=contact.country,
            woo_customer_id=contact.woo_customer_id,
            order_count=getattr(contact, "order_count", 0),
            merged_into=contact.merged_into_id,
        )


class ContactDetailOut(ContactOut):
    identities: list[IdentityOut]


class ContactPage(Schema):
    count: int
    next_offset: int | None
    items: list[ContactOut]


class MergeIn(Schema):
    source_id: int
    reason: str


class MergeOut(Schema):
    source_id: int
    target_id: int
    moved_identities: int
    moved_orders: int


@router.get("", response=ContactPage, summary="List contacts (merged-away contacts are hidden)")
def list_contacts(request: HttpRequest, email: str | None = None, limit: int = 50, offset: int = 0) -> ContactPage:
    items, count, next_offset = paginate(
        contact_list(store=request_store(request), email=email), limit=limit, offset=offset
    )
    return ContactPage(count=count, next_offset=next_offset, items=[ContactOut.of(c) for c in items])


@router.get("/{contact_id}", response=ContactDetailOut, summary="One contact with its identities")
def get_contact(request: HttpRequest, contact_id: int) -> ContactDetailOut:
    contact = contact_get_for_store(store=request_store(request), contact_id=contact_id)
    return ContactDetailOut(
        **ContactOut.of(contact).dict(),
        identities=[IdentityOut(kind=i.kind, value=i.value) for i in contact.identities.all()],
    )


@router.post("/{contact_id}/merge", response=MergeOut, summary="Merge another contact into this one")
def merge_into(request: HttpRequest, contact_id: int, payload: MergeIn) -> MergeOut:
    merge = merge_contacts(
        store=request_store(request),
        source_id=payload.source_id,
        target_id=contact_id,
        reason=payload.reason,
        actor=f"api-key:{request.auth.prefix}",  # type: ignore[attr-defined]
    )
    return MergeOut(
        source_id=merge.source_id,
        target_id=merge.target_id,
        moved_identities=merge.moved_identities,
        moved_orders=merge.moved_orders,
    )
