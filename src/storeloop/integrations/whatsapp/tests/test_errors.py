"""Graph error envelope → transient/terminal classes, retry hints, scrubbing, edge answers."""

from __future__ import annotations

from typing import Any

import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.tests.canned import Answer, CannedServer
from storeloop.integrations.whatsapp.client import WhatsAppClient
from storeloop.integrations.whatsapp.errors import (
    WhatsAppAuthError,
    WhatsAppError,
    WhatsAppInvalidRequest,
    WhatsAppRateLimited,
    WhatsAppRecipientOptedOut,
    WhatsAppTemplateError,
    WhatsAppTerminalError,
    WhatsAppTransientError,
    WhatsAppUndeliverable,
    WhatsAppUnsupportedMessage,
    WhatsAppWindowClosed,
    error_from_code,
    error_from_response,
    parse_retry_after,
    scrub,
)

from .conftest import RecordingLimiter


def graph_error(code: int, *, message: str = "boom", **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC", **extra}}


@pytest.mark.parametrize(
    ("code", "status", "cls", "transient"),
    [
        (130429, 429, WhatsAppRateLimited, True),
        (131056, 400, WhatsAppRateLimited, True),
        (80007, 429, WhatsAppRateLimited, True),
        (4, 429, WhatsAppRateLimited, True),
        (1, 400, WhatsAppTransientError, True),
        (2, 503, WhatsAppTransientError, True),
        (131000, 500, WhatsAppTransientError, True),
        (131016, 503, WhatsAppTransientError, True),
        (131047, 400, WhatsAppWindowClosed, False),
        (131026, 400, WhatsAppUndeliverable, False),
        (131051, 400, WhatsAppUnsupportedMessage, False),
        (131050, 400, WhatsAppRecipientOptedOut, False),
        (132000, 400, WhatsAppTemplateError, False),
        (132001, 400, WhatsAppTemplateError, False),
        (132012, 400, WhatsAppTemplateError, False),
        (100, 400, WhatsAppInvalidRequest, False),
        (131030, 400, WhatsAppInvalidRequest, False),
        (190, 401, WhatsAppAuthError, False),
        (10, 403, WhatsAppAuthError, False),
        (200, 403, WhatsAppAuthError, False),
        (131048, 400, WhatsAppTerminalError, False),
        (999999, 400, WhatsAppTerminalError, False),
    ],
)
def test_codes_map_onto_the_retry_axis(code: int, status: int, cls: type[WhatsAppError], transient: bool) -> None:
    error = error_from_response(status, graph_error(code))
    assert type(error) is cls
    assert isinstance(error, TransientError) is transient
    assert isinstance(error, TerminalError) is not transient
    assert (error.code, error.status, error.fbtrace_id) == (code, status, "AbC")


def test_type_oauthexception_does_not_mean_auth() -> None:
    assert isinstance(error_from_response(400, graph_error(130429)), WhatsAppRateLimited)


def test_unknown_codes_follow_is_transient_then_http_status() -> None:
    assert isinstance(error_from_response(400, graph_error(777, is_transient=True)), WhatsAppTransientError)
    assert isinstance(error_from_response(500, graph_error(777)), WhatsAppTransientError)
    assert isinstance(error_from_response(400, graph_error(777)), WhatsAppTerminalError)


def test_answers_without_an_envelope() -> None:
    assert isinstance(error_from_response(401, None), WhatsAppAuthError)
    limited = error_from_response(429, "<html>", {"Retry-After": "3"})
    assert isinstance(limited, WhatsAppRateLimited)
    assert limited.retry_after == 3.0
    gateway = error_from_response(502, None, was_send=True)
    assert isinstance(gateway, WhatsAppTransientError)
    assert gateway.maybe_sent is True
    assert error_from_response(502, None, was_send=False).maybe_sent is False  # type: ignore[attr-defined]
    assert isinstance(error_from_response(404, None), WhatsAppTerminalError)


def test_rate_limit_defaults_and_scope() -> None:
    throughput = error_from_code(130429, "x")
    pair = error_from_code(131056, "x")
    assert isinstance(throughput, WhatsAppRateLimited)
    assert isinstance(pair, WhatsAppRateLimited)
    assert (throughput.retry_after, throughput.account_wide) == (1.0, True)
    assert (pair.retry_after, pair.account_wide) == (6.0, False)


def test_retry_hints() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    usage = '{"102290129340398":[{"type":"whatsapp","call_count":100,"estimated_time_to_regain_access":5}]}'
    assert parse_retry_after({"X-Business-Use-Case-Usage": usage}) == 300.0
    assert parse_retry_after({"X-Business-Use-Case-Usage": "{not json"}) is None
    assert parse_retry_after({}) is None


def test_messages_and_details_are_scrubbed_of_phone_numbers() -> None:
    body = graph_error(
        131030,
        message="(#131030) Recipient phone number not in allowed list",
        error_data={"details": "Recipient phone number not in allowed list: +1 555-123-4567 (15551234567)"},
    )
    error = error_from_response(400, body)
    assert error.details is not None
    assert "4567" not in error.details
    assert "4567" not in str(error)
    assert "131030" in str(error)  # codes survive
    assert scrub("call 447700900123 now") == "call <phone> now"


def _client(server: CannedServer, sleeps: list[float], limiter: RecordingLimiter | None = None) -> WhatsAppClient:
    return WhatsAppClient("EAAG-x", "1234567890", base_url=server.url, sleep=sleeps.append, limiter=limiter)


def test_200_without_a_message_id_is_maybe_sent() -> None:
    sleeps: list[float] = []
    empty = Answer.json(200, {"messaging_product": "whatsapp", "messages": []})
    with (
        CannedServer(default=empty) as server,
        _client(server, sleeps) as c,
        pytest.raises(WhatsAppTransientError) as info,
    ):
        c.send_template("15551234567", "order_update", "en_US")
    assert info.value.maybe_sent is True
    assert [(r.method, r.target) for r in server.requests] == [("POST", "/v21.0/1234567890/messages")]
    assert sleeps == []


def test_proxy_502_on_a_send_is_not_resent_but_on_a_read_it_is() -> None:
    sleeps: list[float] = []
    gateway = Answer(502, b"<html>Bad Gateway</html>", (("Content-Type", "text/html"),))
    with CannedServer(default=gateway) as server, _client(server, sleeps) as c:
        with pytest.raises(WhatsAppTransientError) as info:
            c.send_template("15551234567", "order_update", "en_US")
        assert info.value.maybe_sent is True
        assert [r.method for r in server.requests] == ["POST"]
        with pytest.raises(WhatsAppTransientError) as info:
            c.test_connection()
        assert info.value.maybe_sent is False
    assert [r.method for r in server.requests] == ["POST", "GET", "GET", "GET", "GET"]  # max_retries=3
    assert len(sleeps) == 3


def test_waba_rate_limit_uses_the_business_use_case_hint() -> None:
    sleeps: list[float] = []
    limiter = RecordingLimiter()
    usage = '{"1":[{"estimated_time_to_regain_access":2}]}'
    limited = Answer.json(
        429, graph_error(80007, message="(#80007) Rate limit issues"), (("X-Business-Use-Case-Usage", usage),)
    )
    phone = Answer.json(200, {"id": "1234567890", "display_phone_number": "15550001111"})
    with CannedServer(limited, limited, phone) as server, _client(server, sleeps, limiter) as c:
        # Two minutes is more than max_retry_wait: raised at once for the task engine to reschedule.
        with pytest.raises(WhatsAppRateLimited) as info:
            c.test_connection()
        assert info.value.retry_after == 120.0
        assert limiter.penalties == [120.0]
        assert sleeps == []
        c.max_retry_wait = 600  # a caller that prefers to wait in place
        assert c.test_connection().display_phone_number == "15550001111"
    assert limiter.penalties == [120.0, 120.0]
    assert 120.0 <= sleeps[0] <= 121.0
    assert limiter.acquired == 3
    assert len(server.requests) == 3
    assert server.requests[0].target == "/v21.0/1234567890?fields=display_phone_number%2Cverified_name%2Cquality_rating"


def test_sends_share_one_kept_alive_connection_with_bearer_auth() -> None:
    sleeps: list[float] = []
    sent = Answer.json(
        200, {"contacts": [{"input": "15551234567", "wa_id": "15551234567"}], "messages": [{"id": "wamid.X"}]}
    )
    with CannedServer(default=sent) as server, _client(server, sleeps) as c:
        assert [c.send_text("15551234567", f"Hi {i}").wamid for i in range(3)] == ["wamid.X"] * 3
    assert server.accepted == 1
    first = server.requests[0]
    assert (first.method, first.target) == ("POST", "/v21.0/1234567890/messages")
    assert (first.headers["authorization"], first.headers["content-type"]) == ("Bearer EAAG-x", "application/json")
    assert first.body == (
        b'{"messaging_product":"whatsapp","recipient_type":"individual","to":"15551234567",'
        b'"type":"text","text":{"preview_url":false,"body":"Hi 0"}}'
    )
