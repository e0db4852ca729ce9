"""The client against the running fake: setup, upserts, line items, associations, lookups."""

from __future__ import annotations

import httpx
import pytest

from storeloop.integrations.hubspot.client import HubSpotClient
from storeloop.integrations.hubspot.errors import HubSpotAuthError, HubSpotValidationError
from storeloop.integrations.hubspot.fake import FakeHubSpot
from storeloop.integrations.hubspot.models import (
    DEAL_TO_CONTACT,
    LINE_ITEM_TO_DEAL,
    LINE_REF,
    ORDER_REF,
    ContactInput,
    DealInput,
    LineItemInput,
)


def posts(hub: FakeHubSpot, suffix: str) -> int:
    return sum(1 for r in hub.requests if r.method == "POST" and r.path.endswith(suffix))


def deal(ref: str, amount: str = "29.35") -> DealInput:
    return DealInput(ref, {"dealname": f"Order {ref}", "amount": amount, "pipeline": "default"})


# --- setup ---------------------------------------------------------------------------------------


def test_check_token_and_auth_error(hub: FakeHubSpot, client: HubSpotClient) -> None:
    client.check_token()
    with HubSpotClient("pat-wrong-secret", base_url=hub.url, max_retries=0) as bad:
        with pytest.raises(HubSpotAuthError) as info:
            bad.check_token()
        assert "pat-wrong-secret" not in repr(bad)
    error = info.value
    assert (error.status, error.category) == (401, "INVALID_AUTHENTICATION")
    assert error.correlation_id
    assert "pat-wrong-secret" not in str(error)


def test_ensure_properties_is_idempotent(hub: FakeHubSpot, client: HubSpotClient) -> None:
    client.ensure_properties()
    created = posts(hub, "/crm/v3/properties/deals")
    assert hub.properties("deals")[ORDER_REF]["hasUniqueValue"] is True
    assert hub.properties("line_items")[LINE_REF]["hasUniqueValue"] is False
    assert {"storeloop_total_spent", "storeloop_rfm_segment"} <= set(hub.properties("contacts"))
    assert created == 2
    hub.clear_requests()
    client.ensure_properties()
    assert [(r.method, r.status) for r in hub.requests] == [("GET", 200)] * 3  # one list per object type


def test_ensure_properties_refuses_a_non_unique_order_ref(hub: FakeHubSpot, client: HubSpotClient) -> None:
    headers = {"Authorization": f"Bearer {hub.token}"}
    httpx.post(f"{hub.url}/crm/v3/properties/deals/groups", json={"name": "storeloop", "label": "S"}, headers=headers)
    body = {"name": ORDER_REF, "label": "x", "type": "string", "fieldType": "text", "groupName": "storeloop"}
    assert httpx.post(f"{hub.url}/crm/v3/properties/deals", json=body, headers=headers).status_code == 201
    with pytest.raises(HubSpotValidationError, match="cannot make an existing property unique"):
        client.ensure_properties()


# --- upserts -------------------------------------------------------------------------------------


def test_upsert_creates_then_updates_with_the_same_ids(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    first = ready.upsert_contacts([ContactInput("Ann@Example.com", {"firstname": "Ann"}), ContactInput("bo@x.io")])
    assert [(o.key, o.created, o.ok) for o in first] == [("Ann@Example.com", True, True), ("bo@x.io", True, True)]
    second = ready.upsert_contacts([ContactInput("ann@example.com", {"firstname": "Anne"}), ContactInput("bo@x.io")])
    assert [o.created for o in second] == [False, False]
    assert [o.remote_id for o in second] == [o.remote_id for o in first]
    assert hub.contacts[str(first[0].remote_id)]["firstname"] == "Anne"
    assert hub.contacts[str(first[0].remote_id)]["email"] == "ann@example.com"
    deals1 = ready.upsert_deals([deal("s1-727"), deal("s1-728")])
    deals2 = ready.upsert_deals([deal("s1-727", "30.00")])
    assert [o.created for o in deals1] == [True, True]
    assert (deals2[0].created, deals2[0].remote_id) == (False, deals1[0].remote_id)
    assert hub.deals[str(deals1[0].remote_id)]["amount"] == "30.00"
    assert hub.duplicates() == 0


def test_more_than_100_inputs_go_in_several_batches(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    inputs = [ContactInput(f"c{i}@shop.test", {"firstname": f"C{i}"}) for i in range(250)]
    outcomes = ready.upsert_contacts(inputs)
    assert posts(hub, "/contacts/batch/upsert") == 3
    assert [o.key for o in outcomes] == [i.email for i in inputs]  # input order, whatever HubSpot returns
    assert all(o.ok and o.created for o in outcomes)
    assert len({o.remote_id for o in outcomes}) == 250
    assert {hub.contacts[str(o.remote_id)]["email"] for o in outcomes} == {i.email for i in inputs}


def test_duplicate_keys_in_one_call_are_sent_once(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    outcomes = ready.upsert_deals([deal("s1-1", "1"), deal("s1-2"), deal("s1-1", "2")])
    assert [o.key for o in outcomes] == ["s1-1", "s1-2"]
    assert hub.deals[str(outcomes[0].remote_id)]["amount"] == "2"  # the later input wins
    assert len(hub.deals) == 2


def test_partial_failure_maps_errors_to_their_keys(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    emails = [f"p{i}@shop.test" for i in range(6)]
    hub.faults.update({"reject_emails": ["p2@shop.test"], "transient_record_errors": 1})
    outcomes = {o.key: o for o in ready.upsert_contacts([ContactInput(e) for e in emails])}
    assert [r.status for r in hub.requests] == [207]
    assert outcomes["p2@shop.test"].error is not None
    assert outcomes["p2@shop.test"].transient is False
    assert outcomes["p2@shop.test"].error.startswith("VALIDATION_ERROR")
    assert (outcomes["p0@shop.test"].ok, outcomes["p0@shop.test"].transient) == (False, True)  # 1st processed
    assert all(outcomes[e].ok for e in emails if e not in ("p0@shop.test", "p2@shop.test"))
    retried = ready.upsert_contacts([ContactInput("p0@shop.test")])
    assert retried[0].ok
    assert retried[0].created


def test_invalid_values_fail_only_their_record(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    hub.faults.update({"reject_refs": ["s9-2"]})
    outcomes = ready.upsert_deals([deal("s9-1"), deal("s9-2"), deal("s9-3", amount="12,50")])
    assert [o.ok for o in outcomes] == [True, False, False]
    assert "INVALID_FLOAT" in str(outcomes[2].error)
    bad_email = ready.upsert_contacts([ContactInput("ok@shop.test"), ContactInput("no-at-sign")])
    assert bad_email[0].ok
    assert bad_email[1].error is not None
    assert "INVALID_EMAIL" in bad_email[1].error


def test_without_multi_status_a_bad_record_is_isolated_by_bisection(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    hub.faults.update({"multi_status": False, "reject_emails": ["b5@shop.test"]})
    emails = [f"b{i}@shop.test" for i in range(16)]
    outcomes = ready.upsert_contacts([ContactInput(e) for e in emails])
    assert [o.key for o in outcomes if not o.ok] == ["b5@shop.test"]
    assert outcomes[5].transient is False
    assert len(hub.contacts) == 15
    assert posts(hub, "/contacts/batch/upsert") <= 1 + 2 * 4  # log2(16) levels of halving


def test_unknown_property_fails_its_records_or_the_call(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    outcomes = ready.upsert_deals([DealInput("s1-1", {"no_such_property": "x"}), deal("s1-2")])
    assert outcomes[0].error is not None
    assert "PROPERTY_DOESNT_EXIST" in outcomes[0].error
    assert not outcomes[0].transient
    assert outcomes[1].ok
    hub.faults.update({"multi_status": False})  # a schema problem is not bisected record by record
    with pytest.raises(HubSpotValidationError) as info:
        ready.upsert_deals([DealInput("s1-3", {"no_such_property": "x"}), deal("s1-4")])
    assert "PROPERTY_DOESNT_EXIST" in info.value.codes
    assert posts(hub, "/deals/batch/upsert") == 2


def test_repeated_upserts_keep_keys_unique(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    refs = [f"s2-{i}" for i in range(150)]
    first = ready.upsert_deals([deal(r) for r in refs])
    for _ in range(2):
        again = ready.upsert_deals([deal(r, "1.00") for r in reversed(refs)])
        assert {o.remote_id for o in again} == {o.remote_id for o in first}
        assert not any(o.created for o in again)
    assert len(hub.deals) == 150
    assert hub.duplicates() == 0


# --- line items ----------------------------------------------------------------------------------


def line_items(deal_id: str, n: int, order: str = "s1-727") -> list[LineItemInput]:
    return [
        LineItemInput(f"{order}-{i}", deal_id, {"name": f"Item {i}", "quantity": "1", "price": "9.5"}) for i in range(n)
    ]


def test_line_items_create_then_update(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    deal_id = str(ready.upsert_deals([deal("s1-727")])[0].remote_id)
    first = ready.upsert_line_items(line_items(deal_id, 3))
    assert all(o.ok and o.created for o in first)
    assert all(
        hub.associations[("line_items", str(o.remote_id), "deals", deal_id)] == {LINE_ITEM_TO_DEAL} for o in first
    )
    hub.crm.graph.page_size = 2  # association reads now page: the client must follow paging.next
    changed = [LineItemInput(i.line_ref, deal_id, {"quantity": "2"}) for i in line_items(deal_id, 3)]
    second = ready.upsert_line_items(changed)
    assert [(o.created, o.remote_id) for o in second] == [(False, o.remote_id) for o in first]
    assert {p["quantity"] for p in hub.line_items.values()} == {"2"}
    assert any(r.method == "GET" and r.path.endswith("/associations/line_items") for r in hub.requests)
    assert ready.deal_line_items([deal_id]) == {deal_id: {o.key: str(o.remote_id) for o in first}}
    assert hub.duplicates() == 0


def test_line_item_create_lost_reply_is_reconciled_not_resent(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    deal_id = str(ready.upsert_deals([deal("s1-800")])[0].remote_id)
    hub.faults.update(
        {
            "fail_next": 1,
            "fail_next_status": 500,
            "fail_next_path": "/line_items/batch/create",
            "fail_next_after_apply": True,
        }
    )
    outcomes = ready.upsert_line_items(line_items(deal_id, 4, "s1-800"))
    assert all(o.ok and o.created for o in outcomes)
    assert posts(hub, "/line_items/batch/create") == 1  # HubSpot did create them: not sent again
    assert len(hub.line_items) == 4
    assert hub.duplicates() == 0


def test_line_item_create_failure_before_apply_is_resent(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    deal_id = str(ready.upsert_deals([deal("s1-801")])[0].remote_id)
    hub.faults.update({"fail_next": 1, "fail_next_status": 502, "fail_next_path": "/line_items/batch/create"})
    outcomes = ready.upsert_line_items(line_items(deal_id, 2, "s1-801"))
    assert all(o.ok and o.created for o in outcomes)
    assert posts(hub, "/line_items/batch/create") == 2
    assert len(hub.line_items) == 2


def test_duplicate_line_items_are_healed(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    deal_id = str(ready.upsert_deals([deal("s1-900")])[0].remote_id)
    first = ready.upsert_line_items(line_items(deal_id, 1, "s1-900"))
    body = {
        "properties": {LINE_REF: "s1-900-0", "name": "racing copy"},
        "associations": [
            {"to": {"id": deal_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 20}]}
        ],
    }
    headers = {"Authorization": f"Bearer {hub.token}"}
    assert httpx.post(f"{hub.url}/crm/v3/objects/line_items", json=body, headers=headers).status_code == 201
    assert hub.duplicates() == 1  # what a create race between two workers would leave behind
    again = ready.upsert_line_items(line_items(deal_id, 1, "s1-900"))
    assert again[0].remote_id == first[0].remote_id  # the oldest one is kept
    assert hub.duplicates() == 0


def test_line_item_for_an_unknown_deal_fails_alone(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    deal_id = str(ready.upsert_deals([deal("s1-950")])[0].remote_id)
    outcomes = ready.upsert_line_items([*line_items(deal_id, 1, "s1-950"), LineItemInput("zz-1", "424242", {})])
    assert outcomes[0].ok
    assert outcomes[1].error is not None
    assert not outcomes[1].transient


# --- associations and lookups --------------------------------------------------------------------


def test_associations_are_idempotent(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    contact = str(ready.upsert_contacts([ContactInput("assoc@shop.test")])[0].remote_id)
    deals = [str(o.remote_id) for o in ready.upsert_deals([deal("s3-1"), deal("s3-2")])]
    pairs = [(d, contact) for d in deals]
    first = ready.associate("deals", "contacts", pairs)
    assert [o.key for o in first] == [f"{d}->{contact}" for d in deals]
    assert all(o.ok for o in first)
    before = hub.associations
    assert before[("deals", deals[0], "contacts", contact)] == {DEAL_TO_CONTACT}
    assert before[("contacts", contact, "deals", deals[0])] == {4}
    again = ready.associate("deals", "contacts", [*pairs, pairs[0]], association_type_id=DEAL_TO_CONTACT)
    assert [o.key for o in again] == [o.key for o in first]
    assert all(o.ok for o in again)
    assert hub.associations == before


def test_association_errors_map_to_their_pair(ready: HubSpotClient) -> None:
    contact = str(ready.upsert_contacts([ContactInput("pair@shop.test")])[0].remote_id)
    deal_id = str(ready.upsert_deals([deal("s4-1")])[0].remote_id)
    outcomes = ready.associate("deals", "contacts", [(deal_id, contact), (deal_id, "31337")])
    assert outcomes[0].ok
    assert outcomes[1].key == f"{deal_id}->31337"
    assert outcomes[1].error is not None
    assert outcomes[1].transient is False


def test_lookup_deals_by_ref(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    outcomes = ready.upsert_deals([deal(f"s5-{i}") for i in range(120)])
    expected = {o.key: str(o.remote_id) for o in outcomes}
    assert ready.get_deals_by_ref([*expected, "s5-missing"]) == expected
    assert ready.search_deals_by_ref([*expected, "s5-missing"]) == expected
