"""The fake WhatsApp Cloud over raw HTTP: shapes, auth, limits, handshake, signed webhooks, control API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storeloop.integrations.whatsapp.fake import FakeWhatsApp
from storeloop.integrations.whatsapp.signature import sign

from .conftest import CUSTOMER, Receiver

SEND = "/v21.0/1234567890/messages"
TEMPLATE = {
    "messaging_product": "whatsapp",
    "to": CUSTOMER,
    "type": "template",
    "template": {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "#1"}, {"type": "text", "text": "x"}]}],
    },
}


@pytest.fixture
def http(fake: FakeWhatsApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {fake.access_token}"}, timeout=2.0) as c:
        yield c


def test_send_answer_has_metas_shape(http: httpx.Client) -> None:
    response = http.post(SEND, json={**TEMPLATE, "to": "+1 555 123 4567"})
    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+1 555 123 4567", "wa_id": CUSTOMER}]
    [message] = body["messages"]
    assert message["id"].startswith("wamid.")
    assert message["message_status"] == "accepted"


def test_error_envelope_for_bad_or_missing_tokens(fake: FakeWhatsApp) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {fake.access_token}"}):
        response = httpx.post(f"{fake.url}{SEND}", json=TEMPLATE, headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert (error["code"], error["type"]) == (190, "OAuthException")
        assert error["fbtrace_id"]
        assert error["message"].startswith("(#190)")
    # Graph also accepts the token as a query parameter.
    assert httpx.post(f"{fake.url}{SEND}?access_token={fake.access_token}", json=TEMPLATE).status_code == 200


def test_unknown_phone_number_or_path_is_code_100(http: httpx.Client) -> None:
    for path in ("/v21.0/999/messages", "/v21.0/1234567890/nope", "/messages"):
        response = http.post(path, json=TEMPLATE)
        assert response.status_code == 400
        assert (response.json()["error"]["code"], response.json()["error"]["error_subcode"]) == (100, 33)


def test_phone_number_node_returns_requested_fields(http: httpx.Client) -> None:
    body = http.get("/v21.0/1234567890", params={"fields": "verified_name,quality_rating"}).json()
    assert body == {"verified_name": "Storeloop Test Shop", "quality_rating": "GREEN", "id": "1234567890"}
    assert http.get("/v21.0/1234567890", params={"fields": "secret_sauce"}).json()["error"]["code"] == 100


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"to": CUSTOMER, "type": "text", "text": {"body": "hi"}}, 100),  # messaging_product missing
        ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "hi"}}, 100),
        ({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text", "text": {}}, 100),
        ({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "image", "image": {"id": "1"}}, 131051),
        ({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text", "text": {"body": "hi"}}, 131047),
    ],
)
def test_send_validation(http: httpx.Client, body: dict[str, object], code: int) -> None:
    response = http.post(SEND, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["error_data"]["messaging_product"] == "whatsapp"


def test_throughput_limit_answers_130429(fake: FakeWhatsApp, http: httpx.Client) -> None:
    fake.rate_limit_per_second = 2
    statuses = [http.post(SEND, json=TEMPLATE).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = http.post(SEND, json=TEMPLATE).json()["error"]
    assert (limited["code"], limited["is_transient"]) == (130429, True)
    assert http.get("/v21.0/1234567890").status_code == 200  # reads are not message throughput
    assert fake.count_429 == 2
    assert fake.sent_count(CUSTOMER) == 2


def test_handshake_against_a_receiver(fake: FakeWhatsApp, receiver: Receiver) -> None:
    assert fake.verify_webhook() is True
    assert fake.verify_webhook(verify_token="wrong") is False
    assert fake.verify_webhook("http://127.0.0.1:9/hook") is False
    assert [d.status for d in fake.deliveries if d.kind == "verify"] == [200, 403, None]


def test_webhooks_are_signed_and_escape_unicode(fake: FakeWhatsApp, receiver: Receiver) -> None:
    fake.simulate_inbound(CUSTOMER, "Grüße, wo ist mein Paket?", profile_name="Jürgen")
    assert receiver.wait_for(lambda r: len(r.batches) == 1)
    raw, header = receiver.raw[0]
    assert header == sign(fake.app_secret, raw)
    assert b"\\u00fc" in raw  # Meta's escaped-unicode bytes, what the signature covers
    payload = json.loads(raw)
    assert payload["object"] == "whatsapp_business_account"
    value = payload["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"display_phone_number": "15550001111", "phone_number_id": "1234567890"}
    assert receiver.batches[0].messages[0].profile_name == "Jürgen"


def test_wrong_secret_is_rejected_and_retried_like_meta(fake: FakeWhatsApp, receiver: Receiver) -> None:
    fake.app_secret = "rotated-secret"
    fake.simulate_inbound(CUSTOMER, "hi")
    assert fake.wait_webhooks(5.0)
    assert [d.status for d in fake.deliveries] == [403, 403, 403]  # first try + 2 retries
    assert receiver.rejected == 3
    assert receiver.batches == []
    unsigned = httpx.post(receiver.url, content=b"{}")
    assert unsigned.status_code == 401


def test_failed_receiver_gets_the_delivery_again(fake: FakeWhatsApp, receiver: Receiver) -> None:
    receiver.fail_next = 1
    fake.simulate_inbound(CUSTOMER, "hi")
    assert receiver.wait_for(lambda r: len(r.batches) == 1)
    assert fake.wait_webhooks(5.0)
    assert [d.status for d in fake.deliveries] == [500, 200]


def test_duplicate_webhooks_fault(fake: FakeWhatsApp, receiver: Receiver, http: httpx.Client) -> None:
    fake.faults.update({"duplicate_webhooks": True})
    wamid = http.post(SEND, json=TEMPLATE).json()["messages"][0]["id"]
    assert receiver.wait_for(lambda r: len(r.statuses(wamid)) == 6)
    assert receiver.statuses(wamid) == ["sent", "sent", "delivered", "delivered", "read", "read"]


def test_control_api(fake: FakeWhatsApp, receiver: Receiver) -> None:
    with httpx.Client(base_url=fake.url, timeout=2.0) as control:
        assert control.post("/__fake__/faults", json={"latency_ms": -1}).status_code == 400
        assert control.post("/__fake__/faults", json={"bogus": 1}).status_code == 400
        faults = control.post("/__fake__/faults", json={"fail_next": 1, "fail_next_code": 131016}).json()
        assert (faults["fail_next"], faults["fail_next_code"]) == (1, 131016)
        wamid = control.post("/__fake__/inbound", json={"from": CUSTOMER, "text": "HELP"}).json()["wamid"]
        assert wamid.startswith("wamid.")
        assert fake.last_inbound(CUSTOMER) is not None
        assert receiver.wait_for(lambda r: len(r.batches) == 1)
        assert receiver.batches[0].messages[0].keyword == "help"
        assert control.post("/__fake__/verify", json={}).json() == {"verified": True}
        assert control.get("/__fake__/state").json()["templates"]["order_update"]["params"] == 2
        assert control.post("/__fake__/webhook", json={"url": None}).json() == {"webhook_url": None}
        assert control.post("/__fake__/reset").json() == {"reset": True}
        assert fake.faults.fail_next == 0
        assert fake.last_inbound(CUSTOMER) is None
        assert control.get("/__fake__/nope").status_code == 404


@pytest.mark.slow
def test_runs_standalone_and_prints_its_url() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "storeloop.integrations.whatsapp.fake", "--port", "0", "--template", "hi:en_US:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        headers = {"Authorization": f"Bearer {info['access_token']}"}
        body: dict[str, Any] = {"messaging_product": "whatsapp", "to": CUSTOMER, "type": "template"}
        body["template"] = {"name": "hi", "language": {"code": "en_US"}}
        response = httpx.post(f"{info['url']}/v21.0/{info['phone_number_id']}/messages", json=body, headers=headers)
        assert response.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
