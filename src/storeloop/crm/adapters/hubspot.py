"""HubSpot adapter: contacts by email, deals by ``storeloop_order_ref``, line items by deal + ref."""

from __future__ import annotations

import datetime as dt

from storeloop.crm.adapters.base import Known, PushResult
from storeloop.crm.mapping import OrderPayload
from storeloop.crm.models import CrmConnection
from storeloop.integrations.crm import RecordOutcome
from storeloop.integrations.hubspot.client import HubSpotClient
from storeloop.integrations.hubspot.errors import HubSpotAuthError
from storeloop.integrations.hubspot.models import (
    DEAL_TO_CONTACT,
    LAST_ORDER_DATE,
    ORDER_COUNT,
    RFM_SEGMENT,
    STORE_ID,
    TOTAL_SPENT,
    ContactInput,
    DealInput,
    LineItemInput,
)

# Our custom properties are created once per process and account (an idempotent call, but each
# costs requests from the shared budget).
_properties_ready: set[str] = set()


class HubSpotAdapter:
    def __init__(self, connection: CrmConnection, client: HubSpotClient) -> None:
        self.connection = connection
        self.client = client

    def check(self) -> None:
        self.client.check_token()
        self.client.ensure_properties()
        _properties_ready.add(self.connection.budget_key)

    def close(self) -> None:
        self.client.close()

    def push(self, payloads: list[OrderPayload], known: dict[str, Known]) -> list[PushResult]:
        from storeloop.crm.services import CredentialsRevoked

        try:
            if self.connection.budget_key not in _properties_ready:
                self.client.ensure_properties()
                _properties_ready.add(self.connection.budget_key)
            return self._push(payloads)
        except HubSpotAuthError as exc:
            raise CredentialsRevoked(f"HubSpot refused our token: {exc.category or exc.status}") from None

    def _push(self, payloads: list[OrderPayload]) -> list[PushResult]:
        results = {p.order_ref: PushResult(p.order_ref, ok=False) for p in payloads}
        contacts = {p.contact.email: p.contact for p in payloads if p.contact}
        contact_out: dict[str, RecordOutcome] = {}
        if contacts:
            contact_out = {
                o.key: o
                for o in self.client.upsert_contacts([
                    ContactInput(c.email, _props({
                        "firstname": c.first_name, "lastname": c.last_name, "phone": c.phone, "city": c.city,
                        "country": c.country, "address": c.address, "zip": c.zip, TOTAL_SPENT: c.total_spent,
                        ORDER_COUNT: c.order_count, LAST_ORDER_DATE: c.last_order_date, RFM_SEGMENT: c.rfm_segment,
                    }))
                    for c in contacts.values()
                ])
            }  # fmt: skip
        deal_out = {
            o.key: o
            for o in self.client.upsert_deals([
                DealInput(p.order_ref, _props({
                    "dealname": p.deal_name, "amount": p.amount, "deal_currency_code": p.currency,
                    "pipeline": self.connection.pipeline or "default", "dealstage": p.stage,
                    "closedate": f"{dt.date.fromisoformat(p.close_date).isoformat()}T00:00:00Z",
                    STORE_ID: str(self.connection.store_id), **p.extra,
                }))
                for p in payloads
            ])
        }  # fmt: skip
        lines: list[LineItemInput] = []
        pairs: list[tuple[str, str]] = []
        for payload in payloads:
            deal = deal_out.get(payload.order_ref)
            if deal is None or not deal.ok:
                _fail(results[payload.order_ref], deal, "deal")
                continue
            contact = contact_out.get(payload.contact.email.lower()) if payload.contact else None
            if payload.contact and (contact is None or not contact.ok):
                _fail(results[payload.order_ref], contact, "contact")
                continue
            results[payload.order_ref].deal_id = deal.remote_id or ""
            if contact is not None and contact.remote_id:
                results[payload.order_ref].contact_id = contact.remote_id
                pairs.append((deal.remote_id or "", contact.remote_id))
            lines.extend(
                LineItemInput(line.ref, deal.remote_id or "", _props({
                    "name": line.name, "quantity": str(line.quantity), "price": line.price, "hs_sku": line.sku,
                    "hs_line_item_currency_code": payload.currency,
                }))
                for line in payload.lines
            )  # fmt: skip
        line_out = {o.key: o for o in self.client.upsert_line_items(lines)} if lines else {}
        assoc_out = (
            {o.key: o for o in self.client.associate("deals", "contacts", pairs, association_type_id=DEAL_TO_CONTACT)}
            if pairs
            else {}
        )
        for payload in payloads:
            result = results[payload.order_ref]
            if result.error:
                continue
            failed_line = next((line_out.get(li.ref) for li in payload.lines if not _ok(line_out.get(li.ref))), None)
            if any(not _ok(line_out.get(li.ref)) for li in payload.lines):
                _fail(result, failed_line, "line item")
                continue
            if result.contact_id and not _ok(assoc_out.get(f"{result.deal_id}->{result.contact_id}")):
                _fail(result, assoc_out.get(f"{result.deal_id}->{result.contact_id}"), "association")
                continue
            result.ok = True
            result.line_ids = {li.ref: line_out[li.ref].remote_id or "" for li in payload.lines}
        return list(results.values())


def _props(values: dict[str, str]) -> dict[str, str | None]:
    # Empty means "we have nothing": leave HubSpot's value alone rather than blank it.
    return {k: v for k, v in values.items() if v != ""}


def _ok(outcome: RecordOutcome | None) -> bool:
    return outcome is not None and outcome.ok


def _fail(result: PushResult, outcome: RecordOutcome | None, what: str) -> None:
    result.ok = False
    result.transient = outcome.transient if outcome else True
    result.error = f"{what}: {outcome.error if outcome else 'no answer'}"
