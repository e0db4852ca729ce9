"""CRM sync to HubSpot through the public services, against the fake HubSpot over real HTTP."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils import timezone

from storeloop.crm.models import CrmConnection, CrmSyncRecord
from storeloop.crm.services import CredentialsRevoked, OrderSyncService, drain_connection, mark_orders_changed

pytestmark = pytest.mark.django_db(transaction=True)


def deal_of(hubspot: Any, ref: str) -> dict[str, str]:
    found = [{**d, "id": k} for k, d in hubspot.deals.items() if d.get("storeloop_order_ref") == ref]
    assert len(found) == 1, found
    return found[0]


def test_order_becomes_contact_deal_lines_and_associations(
    hubspot_connection: CrmConnection, hubspot: Any, mirror_order: Any
) -> None:
    order = mirror_order(status="completed")
    assert dict(drain_connection(hubspot_connection.pk)) == {"synced": 1}
    ref = f"s{order.store_id}-727"
    deal = deal_of(hubspot, ref)
    assert (deal["dealname"], deal["amount"], deal["dealstage"], deal["pipeline"]) == (
        "Order #727", "29.35", "closedwon", "default",
    )  # fmt: skip
    assert deal["deal_currency_code"] == "USD"
    contacts = [{**c, "id": k} for k, c in hubspot.contacts.items()]
    assert [(c["email"], c["firstname"], c["phone"]) for c in contacts] == [
        ("john.doe@example.com", "John", "+15555555555")
    ]
    lines = sorted(hubspot.line_items.values(), key=lambda li: li["storeloop_line_ref"])
    assert [(li["storeloop_line_ref"], li["name"], li["quantity"], li["price"]) for li in lines] == [
        (f"{ref}-315", "Woo Single #1", "2", "3.00"),
        (f"{ref}-316", "Ship Your Idea", "1", "12.00"),
    ]
    record = CrmSyncRecord.objects.get(order=order)
    assert record.remote_deal_id == deal["id"]
    assert record.remote_contact_id == contacts[0]["id"]
    assert set(record.remote_line_ids) == {f"{ref}-315", f"{ref}-316"}
    pairs = {(k[0], k[1], k[2], k[3]) for k in hubspot.associations}
    assert ("deals", record.remote_deal_id, "contacts", record.remote_contact_id) in pairs


def test_stage_mapping_is_configurable_and_a_cancellation_moves_the_deal(
    hubspot_connection: CrmConnection, hubspot: Any, mirror_order: Any
) -> None:
    CrmConnection.objects.filter(pk=hubspot_connection.pk).update(stage_mapping={"processing": "contractsent"})
    order = mirror_order(status="processing", date_modified_gmt="2017-03-22T19:28:08")
    drain_connection(hubspot_connection.pk)
    ref = f"s{order.store_id}-727"
    assert deal_of(hubspot, ref)["dealstage"] == "contractsent"
    mirror_order(status="cancelled", date_modified_gmt="2017-03-23T19:28:08")
    drain_connection(hubspot_connection.pk)
    assert deal_of(hubspot, ref)["dealstage"] == "closedlost"
    assert hubspot.duplicates() == 0


def test_429_with_retry_after_is_honoured_and_nothing_duplicates(
    hubspot_connection: CrmConnection, hubspot: Any, mirror_order: Any
) -> None:
    for n in range(1, 4):
        mirror_order(id=n, billing={"email": f"c{n}@example.com"})
    hubspot.faults.update({"fail_next": 1, "fail_next_status": 429})
    before = hubspot.count_429
    assert dict(drain_connection(hubspot_connection.pk)) == {"synced": 3}
    assert hubspot.count_429 == before + 1
    assert len(hubspot.deals) == 3
    assert hubspot.duplicates() == 0


def test_207_partial_failure_retries_only_the_failed_record(
    hubspot_connection: CrmConnection, hubspot: Any, mirror_order: Any
) -> None:
    for n in range(1, 4):
        mirror_order(id=n, billing={"email": f"c{n}@example.com"})
    hubspot.faults.update({"transient_record_errors": 1})
    drain_connection(hubspot_connection.pk)
    states = sorted(CrmSyncRecord.objects.values_list("state", flat=True))
    assert states == ["failed", "synced", "synced"]
    failed = CrmSyncRecord.objects.get(state="failed")
    synced_before = {r.pk: r.synced_at for r in CrmSyncRecord.objects.filter(state="synced")}
    CrmSyncRecord.objects.filter(pk=failed.pk).update(next_attempt_at=timezone.now())
    drain_connection(hubspot_connection.pk)
    assert set(CrmSyncRecord.objects.values_list("state", flat=True)) == {"synced"}
    # The records that had succeeded were not pushed again.
    assert {r.pk: r.synced_at for r in CrmSyncRecord.objects.filter(pk__in=synced_before)} == synced_before
    assert len(hubspot.deals) == 3
    assert hubspot.duplicates() == 0


def test_a_rejected_token_breaks_the_connection(
    hubspot_connection: CrmConnection, hubspot: Any, mirror_order: Any
) -> None:
    order = mirror_order()
    hubspot.tokens.clear()  # the private app was deleted in HubSpot
    record = CrmSyncRecord.objects.get(order=order)
    with pytest.raises(CredentialsRevoked):
        OrderSyncService().sync_orders_batch(hubspot_connection.pk, [record.pk])
    hubspot_connection.refresh_from_db()
    assert hubspot_connection.status == "broken"


def test_two_workers_draining_at_once_create_no_duplicates(
    hubspot_connection: CrmConnection, hubspot: Any, mirror_order: Any
) -> None:
    orders = [mirror_order(id=n, billing={"email": f"c{n % 7}@example.com"}) for n in range(1, 151)]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            drain_connection(hubspot_connection.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(CrmSyncRecord.objects.values_list("state", flat=True)) == {"synced"}
    assert len(hubspot.deals) == len(orders)
    assert len(hubspot.contacts) == 7
    assert hubspot.duplicates() == 0


def test_resync_everything_pushes_again_without_duplicates(
    hubspot_connection: CrmConnection, hubspot: Any, mirror_order: Any, store: Any
) -> None:
    from storeloop.crm.services import resync

    mirror_order()
    drain_connection(hubspot_connection.pk)
    requests = hubspot.request_count
    assert resync(store_id=store.pk, everything=True) == 1
    assert dict(drain_connection(hubspot_connection.pk)) == {"synced": 1}
    assert hubspot.request_count > requests
    assert len(hubspot.deals) == 1
    assert hubspot.duplicates() == 0


def test_marking_twice_in_one_transaction_queues_one_drain(
    hubspot_connection: CrmConnection, mirror_order: Any
) -> None:
    from django_tasks_db.models import DBTaskResult

    order = mirror_order()
    DBTaskResult.objects.all().delete()
    CrmConnection.objects.update(drain_scheduled=False)
    with transaction.atomic():
        mark_orders_changed(order.store_id, [order.pk])
        mark_orders_changed(order.store_id, [order.pk])
    assert DBTaskResult.objects.filter(task_path="storeloop.crm.tasks.drain_crm_connection").count() == 1
