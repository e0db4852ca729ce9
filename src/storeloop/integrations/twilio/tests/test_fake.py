"""The fake on its own: Twilio's shapes and auth, the control API, faults and the standalone runner."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from storeloop.integrations.twilio.fake import FakeTwilio

from .conftest import wait_until
from .receiver import Receiver

TO = "+14155552671"


def _api(twilio: FakeTwilio, auth: tuple[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=twilio.url, auth=auth or (twilio.account_sid, twilio.auth_token), timeout=5)


def test_message_resource_shape(twilio: FakeTwilio) -> None:
    with _api(twilio) as http:
        created = http.post(
            f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json",
            data={"To": TO, "From": twilio.from_number, "Body": "Hi"},
        )
    assert created.status_code == 201
    assert created.headers["content-type"].startswith("application/json")
    body = created.json()
    assert set(body) >= {
        "sid", "account_sid", "messaging_service_sid", "from", "to", "body", "status", "direction", "num_segments",
        "num_media", "price", "price_unit", "error_code", "error_message", "api_version", "date_created",
        "date_updated", "date_sent", "uri", "subresource_uris",
    }  # fmt: skip
    assert (body["status"], body["num_segments"], body["direction"]) == ("queued", "1", "outbound-api")
    assert body["date_created"].endswith("+0000")
    assert body["uri"] == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages/{body['sid']}.json"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "+15005550006", "Body": "Hi"}, 21604),
        ({"To": TO, "Body": "Hi"}, 21603),
        ({"To": TO, "From": "+15005550006"}, 21602),
        ({"To": TO, "From": "+15005550006", "Body": "x" * 1601}, 21617),
        ({"To": "0044123", "From": "+15005550006", "Body": "Hi"}, 21211),
        ({"To": TO, "From": "+14155550000", "Body": "Hi"}, 21606),
        ({"To": TO, "MessagingServiceSid": "MG" + "0" * 32, "Body": "Hi"}, 21705),
    ],
)
def test_validation_errors(twilio: FakeTwilio, form: dict[str, str], code: int) -> None:
    with _api(twilio) as http:
        answer = http.post(f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json", data=form)
    assert answer.status_code == 400
    body = answer.json()
    assert (body["code"], body["status"]) == (code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert twilio.messages == []


def test_auth(twilio: FakeTwilio) -> None:
    path = f"/2010-04-01/Accounts/{twilio.account_sid}.json"
    with _api(twilio, ("AC" + "0" * 32, twilio.auth_token)) as http:
        wrong_sid = http.get(path)
    with httpx.Client(base_url=twilio.url) as http:
        missing = http.get(path)
    for answer in (wrong_sid, missing):
        assert answer.status_code == 401
        assert answer.json()["code"] == 20003
        assert answer.headers["www-authenticate"] == 'Basic realm="Twilio API"'
    with _api(twilio) as http:
        other_account = http.get(f"/2010-04-01/Accounts/{'AC' + '1' * 32}.json")
        assert other_account.status_code == 404
        assert other_account.json()["code"] == 20404
        assert http.get(path).json()["status"] == "active"


def test_control_api(twilio: FakeTwilio, receiver: Receiver) -> None:
    with httpx.Client(base_url=twilio.url, timeout=5) as control:
        faults = control.post("/__fake__/faults", json={"fail_next": 1, "fail_next_status": 500}).json()
        assert faults["fail_next"] == 1
        assert control.post("/__fake__/faults", json={"nope": 1}).status_code == 400
        assert control.post("/__fake__/faults", json={"error_rate": 2}).status_code == 400
        numbers = control.post("/__fake__/numbers", json={"opted_out": [TO]}).json()
        assert numbers["opted_out"] == [TO]
        with _api(twilio) as http:
            path = f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
            failed = http.post(path, data={"To": TO, "From": twilio.from_number, "Body": "x"})
            assert (failed.status_code, failed.json()["code"]) == (500, 20500)
            assert http.post(path, data={"To": TO, "From": twilio.from_number, "Body": "x"}).json()["code"] == 21610
        inbound = control.post("/__fake__/inbound", json={"from": TO, "body": "START", "to_url": receiver.url()})
        assert inbound.json()["status"] == 200
        assert twilio.numbers.opted_out == set()
        state = control.get("/__fake__/state").json()
        assert (state["messages"], state["inbound"], state["requests"]) == (0, 1, 2)
        assert control.post("/__fake__/flush", json={}).json() == {"idle": True}
        assert control.post("/__fake__/reset").json() == {"reset": True}
        assert control.get("/__fake__/messages").json() == []
        assert control.get("/__fake__/nope").status_code == 404


def test_error_rate_and_gateway_pages(twilio: FakeTwilio) -> None:
    twilio.faults.update({"error_rate": 1.0})
    with _api(twilio) as http:
        statuses = {http.get(f"/2010-04-01/Accounts/{twilio.account_sid}.json").status_code for _ in range(20)}
        gateway = None
        for _ in range(20):
            answer = http.get(f"/2010-04-01/Accounts/{twilio.account_sid}.json")
            if answer.status_code in (502, 504):
                gateway = answer
                break
    assert statuses <= {500, 502, 503, 504}
    assert len(statuses) > 1
    assert gateway is not None
    assert gateway.headers["content-type"] == "text/html"


def test_duplicates_and_counts(twilio: FakeTwilio) -> None:
    with _api(twilio) as http:
        path = f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
        for body in ("same", "same", "other"):
            http.post(path, data={"To": TO, "From": twilio.from_number, "Body": body})
    assert twilio.sent_count(TO) == 3
    (group,) = twilio.duplicates()
    assert len(group) == 2
    assert twilio.flush()
    wait_until(lambda: all(m.status == "delivered" for m in twilio.messages))


@pytest.mark.slow
def test_standalone_runner_prints_its_url() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "storeloop.integrations.twilio.fake", "--port", "0", "--rate-limit", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["url"].startswith("http://127.0.0.1:")
        answer = httpx.get(
            f"{info['url']}/2010-04-01/Accounts/{info['account_sid']}.json",
            auth=(info["account_sid"], info["auth_token"]),
        )
        assert answer.status_code == 200
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0
