"""CRM sync to Zoho through the public services, against the fake Zoho over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from storeloop.crm.adapters.factory import adapter_for
from storeloop.crm.connections import check_connection, connect_zoho
from storeloop.crm.models import CrmConnection, CrmSyncRecord
from storeloop.crm.services import CredentialsRevoked, OrderSyncService, drain_connection
from storeloop.orders.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connection(store: Any, zoho: Any) -> CrmConnection:
    conn = connect_zoho(
        store_id=store.pk, client_id="zid", client_secret="zsecret", refresh_token="1000.refresh",
        accounts_url=zoho.accounts_url, api_url=zoho.api_url,
    )  # fmt: skip
    check_connection(conn)
    return conn


def deals(zoho: Any) -> dict[str, dict[str, Any]]:
    return {d["Storeloop_Order_Ref"]: d for d in zoho.records("Deals")}


def test_an_order_event_syncs_contact_and_deal(connection: CrmConnection, zoho: Any, mirror_order: Any) -> None:
    order = mirror_order(status="processing")
    record = CrmSyncRecord.objects.get(order=order)
    assert record.state == "pending"
    counts = drain_connection(connection.pk)
    assert dict(counts) == {"synced": 1}
    record.refresh_from_db()
    ref = f"s{order.store_id}-727"
    deal = deals(zoho)[ref]
    assert deal["Deal_Name"] == "Order #727"
    assert deal["Stage"] == "Closed Won"
    assert deal["Amount"] == 29.35
    contacts = zoho.records("Contacts")
    assert [(c["Email"], c["Last_Name"]) for c in contacts] == [("john.doe@example.com", "Doe")]
    assert deal["Contact_Name"]["id"] == contacts[0]["id"]
    assert (record.state, record.remote_deal_id, record.remote_contact_id) == ("synced", deal["id"], contacts[0]["id"])
    assert [h.outcome for h in record.history.all()] == ["synced"]


def test_an_unchanged_payload_makes_no_api_call(connection: CrmConnection, zoho: Any, mirror_order: Any) -> None:
    order = mirror_order()
    drain_connection(connection.pk)
    before = len(zoho.api_requests())
    assert OrderSyncService().sync_order(order.pk) == {"zoho": "unchanged"}
    assert len(zoho.api_requests()) == before


def test_status_change_and_refund_move_the_deal(connection: CrmConnection, zoho: Any, mirror_order: Any) -> None:
    mirror_order(status="pending", date_modified_gmt="2017-03-22T19:28:08")
    drain_connection(connection.pk)
    ref = f"s{connection.store_id}-727"
    assert deals(zoho)[ref]["Stage"] == "Qualification"
    mirror_order(status="completed", date_modified_gmt="2017-03-23T10:00:00")
    drain_connection(connection.pk)
    assert deals(zoho)[ref]["Stage"] == "Closed Won"
    mirror_order(
        status="refunded", date_modified_gmt="2017-03-24T10:00:00",
        refunds=[{"id": 1, "reason": "broken", "total": "-29.35"}],
    )  # fmt: skip
    drain_connection(connection.pk)
    deal = deals(zoho)[ref]
    assert (deal["Stage"], deal["Amount"]) == ("Closed Lost", 0.0)
    assert zoho.duplicates() == 0
    assert len(zoho.records("Deals")) == 1


def test_a_crash_between_the_crm_call_and_our_commit_creates_no_duplicate(
    connection: CrmConnection, zoho: Any, mirror_order: Any
) -> None:
    class CrashAfterPush:
        """The real adapter, then the process "dies" before we record the result."""

        def __init__(self, conn: CrmConnection) -> None:
            self.inner = adapter_for(conn)

        def push(self, payloads: Any, known: Any) -> Any:
            self.inner.push(payloads, known)
            raise KeyboardInterrupt  # not an Exception: nothing records this attempt

        def check(self) -> None: ...

        def close(self) -> None:
            self.inner.close()

    order = mirror_order()
    record = CrmSyncRecord.objects.get(order=order)
    with pytest.raises(KeyboardInterrupt):
        OrderSyncService(adapter_factory=CrashAfterPush).sync_orders_batch(connection.pk, [record.pk])
    record.refresh_from_db()
    assert record.state == "pending"  # we never learned it worked
    drain_connection(connection.pk)
    record.refresh_from_db()
    assert record.state == "synced"
    assert len(zoho.records("Deals")) == 1
    assert len(zoho.records("Contacts")) == 1
    assert zoho.duplicates() == 0


def test_an_expired_access_token_is_refreshed_once(connection: CrmConnection, zoho: Any, mirror_order: Any) -> None:
    mirror_order()
    refreshes = zoho.refresh_count
    zoho.expire_access_tokens()
    assert dict(drain_connection(connection.pk)) == {"synced": 1}
    assert zoho.refresh_count == refreshes + 1


def test_a_revoked_refresh_token_marks_the_connection_broken(
    connection: CrmConnection, zoho: Any, mirror_order: Any, api: Any
) -> None:
    zoho.expire_access_tokens()
    zoho.revoke_refresh_token()
    order = mirror_order()
    record = CrmSyncRecord.objects.get(order=order)
    with pytest.raises(CredentialsRevoked):
        OrderSyncService().sync_orders_batch(connection.pk, [record.pk])
    connection.refresh_from_db()
    assert connection.status == "broken"
    assert "Zoho refused" in connection.broken_reason
    assert zoho.records("Deals") == []
    body = api.get("/api/v1/crm/connections").json()
    assert body[0]["status"] == "broken"
    # Nothing is pushed while broken; the records wait.
    assert dict(drain_connection(connection.pk)) == {}


def test_an_outage_then_recovery_syncs_everything_once(connection: CrmConnection, zoho: Any, mirror_order: Any) -> None:
    from django.utils import timezone

    orders = [mirror_order(id=n, billing={"email": f"c{n}@example.com"}) for n in range(1, 6)]
    zoho.faults.error_rate = 1.0
    with pytest.raises(Exception):  # noqa: B017,PT011 - the transient error is re-raised for the task to retry
        drain_connection(connection.pk)
    assert set(CrmSyncRecord.objects.values_list("state", flat=True)) == {"failed"}
    zoho.faults.error_rate = 0.0
    CrmSyncRecord.objects.update(next_attempt_at=timezone.now())
    drain_connection(connection.pk)
    assert set(CrmSyncRecord.objects.values_list("state", flat=True)) == {"synced"}
    assert len(zoho.records("Deals")) == len(orders)
    assert len(zoho.records("Contacts")) == len(orders)
    assert zoho.duplicates() == 0


def test_per_record_rejection_only_fails_that_record(connection: CrmConnection, zoho: Any, mirror_order: Any) -> None:
    mirror_order(id=1, billing={"email": "good@example.com"})
    mirror_order(id=2, billing={"email": "bad@example.com"})
    zoho.faults.reject_emails = {"bad@example.com"}
    drain_connection(connection.pk)
    states = dict(CrmSyncRecord.objects.values_list("order__external_id", "state"))
    assert states == {1: "synced", 2: "dead"}
    assert "contact" in CrmSyncRecord.objects.get(order__external_id=2).last_error


def test_order_sync_api(connection: CrmConnection, zoho: Any, mirror_order: Any, api: Any, other_store: Any) -> None:
    order = mirror_order()
    drain_connection(connection.pk)
    body = api.get(f"/api/v1/orders/{order.pk}/sync").json()
    assert body["order_id"] == order.pk
    assert [(r["provider"], r["state"]) for r in body["records"]] == [("zoho", "synced")]
    assert body["records"][0]["history"][0]["outcome"] == "synced"
    response = api.post(f"/api/v1/orders/{order.pk}/sync")
    assert response.status_code == 202
    assert response.json() == {"queued": 1}
    assert CrmSyncRecord.objects.get(order=order).state == "pending"
    assert api.post("/api/v1/crm/resync", {"states": ["bogus"]}).status_code == 422
    foreign = Order.objects.create(store=other_store, external_id=1, status="x", currency="EUR", total=1,
                                   date_created=order.date_created, date_modified=order.date_modified)  # fmt: skip
    assert api.get(f"/api/v1/orders/{foreign.pk}/sync").status_code == 404
