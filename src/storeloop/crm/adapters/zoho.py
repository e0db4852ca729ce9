"""Zoho CRM adapter: Contacts by email, Deals (or Sales_Orders) by ``Storeloop_Order_Ref``."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

from django.db import transaction

from storeloop.crm.adapters.base import Known, PushResult
from storeloop.crm.mapping import OrderPayload
from storeloop.crm.models import CrmConnection
from storeloop.integrations.crm import RecordOutcome
from storeloop.integrations.zoho.auth import CachedToken
from storeloop.integrations.zoho.client import ZohoClient
from storeloop.integrations.zoho.errors import ZohoAuthError, ZohoAuthRevoked
from storeloop.integrations.zoho.models import (
    ContactRecord,
    DealRecord,
    OrderedItem,
    ProductRecord,
    SalesOrderRecord,
)


class DatabaseTokenStore:
    """Zoho's access token kept (encrypted) on the connection row, shared by every worker.

    ``refresh_lock`` locks that row, so workers whose token expires together mint one new token:
    Zoho allows only a handful of mints per refresh token in ten minutes.
    """

    def __init__(self, connection_id: int) -> None:
        self.connection_id = connection_id

    def load(self) -> CachedToken | None:
        import orjson

        # values_list runs the field's converter: this is the decrypted JSON.
        token = CrmConnection.objects.filter(pk=self.connection_id).values_list("cached_token", flat=True).first()
        if not token:
            return None
        data = orjson.loads(token)
        return CachedToken(data["access_token"], data["api_domain"], float(data["expires_at"]))

    def save(self, token: CachedToken) -> None:
        import orjson

        value = orjson.dumps(
            {"access_token": token.access_token, "api_domain": token.api_domain, "expires_at": token.expires_at}
        ).decode()
        connection = CrmConnection.objects.get(pk=self.connection_id)
        connection.cached_token = value
        connection.save(update_fields=["cached_token", "updated_at"])

    @contextlib.contextmanager
    def refresh_lock(self) -> Iterator[object]:
        with transaction.atomic():
            yield CrmConnection.objects.select_for_update().filter(pk=self.connection_id).first()


class ZohoAdapter:
    def __init__(self, connection: CrmConnection, client: ZohoClient) -> None:
        self.connection = connection
        self.client = client
        self.module = connection.zoho_module or "Deals"

    def check(self) -> None:
        self.client.check(modules=(self.module,))

    def close(self) -> None:
        self.client.close()

    def push(self, payloads: list[OrderPayload], known: dict[str, Known]) -> list[PushResult]:
        from storeloop.crm.services import CredentialsRevoked

        try:
            return self._push(payloads)
        except (ZohoAuthRevoked, ZohoAuthError) as exc:
            raise CredentialsRevoked(f"Zoho refused our credentials: {exc.code}") from None

    def _push(self, payloads: list[OrderPayload]) -> list[PushResult]:
        results = {p.order_ref: PushResult(p.order_ref, ok=False) for p in payloads}
        contacts = {p.contact.email: p.contact for p in payloads if p.contact}
        contact_ids: dict[str, RecordOutcome] = {}
        if contacts:
            records = [
                ContactRecord.build(c.email, first_name=c.first_name, last_name=c.last_name, phone=c.phone)
                for c in contacts.values()
            ]
            contact_ids = {o.key: o for o in self.client.upsert_contacts(records)}
        ready: list[OrderPayload] = []
        for payload in payloads:
            outcome = contact_ids.get(payload.contact.email.lower()) if payload.contact else None
            if payload.contact and (outcome is None or not outcome.ok):
                _fail(results[payload.order_ref], outcome, "contact")
            else:
                ready.append(payload)
        if self.module == "Sales_Orders":
            outcomes = self._sales_orders(ready, contact_ids, results)
        else:
            outcomes = self.client.upsert_deals(
                [
                    DealRecord.build(
                        p.order_ref,
                        deal_name=p.deal_name,
                        amount=p.amount,
                        stage=p.stage,
                        closing_date=dt.date.fromisoformat(p.close_date),
                        contact_id=_id(contact_ids, p),
                        pipeline=self.connection.pipeline or None,
                        extra=p.extra or None,
                    )
                    for p in ready
                ]
            )
        by_ref = {o.key: o for o in outcomes}
        for payload in ready:
            result = results[payload.order_ref]
            outcome = by_ref.get(payload.order_ref)
            if outcome is None or not outcome.ok:
                _fail(result, outcome, self.module)
                continue
            result.ok = True
            result.deal_id = outcome.remote_id or ""
            result.contact_id = _id(contact_ids, payload) or ""
        return list(results.values())

    def _sales_orders(
        self, ready: list[OrderPayload], contact_ids: dict[str, RecordOutcome], results: dict[str, PushResult]
    ) -> list[RecordOutcome]:
        products = {(line.sku or f"woo-{line.product_external_id}"): line for p in ready for line in p.lines}
        product_ids = (
            {
                o.key: o
                for o in self.client.upsert_products(
                    [
                        ProductRecord.build(code, product_name=line.name, unit_price=line.price)
                        for code, line in products.items()
                    ]
                )
            }
            if products
            else {}
        )
        orders: list[SalesOrderRecord] = []
        for payload in ready:
            items = []
            for line in payload.lines:
                product = product_ids.get(line.sku or f"woo-{line.product_external_id}")
                if product is None or not product.ok:
                    _fail(results[payload.order_ref], product, "product")
                    break
                items.append(OrderedItem.build(product.remote_id or "", quantity=line.quantity, list_price=line.price))
            else:
                if items:
                    orders.append(
                        SalesOrderRecord.build(
                            payload.order_ref, subject=payload.deal_name, items=items, status=payload.stage,
                            contact_id=_id(contact_ids, payload), extra=payload.extra or None,
                        )
                    )  # fmt: skip
        return self.client.upsert_sales_orders(orders) if orders else []


def _id(contact_ids: dict[str, RecordOutcome], payload: OrderPayload) -> str | None:
    if payload.contact is None:
        return None
    outcome = contact_ids.get(payload.contact.email.lower())
    return outcome.remote_id if outcome else None


def _fail(result: PushResult, outcome: RecordOutcome | None, what: str) -> None:
    result.ok = False
    result.transient = outcome.transient if outcome else True
    result.error = f"{what}: {outcome.error if outcome else 'no answer'}"
