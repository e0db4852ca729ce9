"""Webhook parsing (captured shapes), keywords, the 24-hour window and template parameters."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storeloop.integrations.whatsapp.errors import WhatsAppRecipientOptedOut, WhatsAppWindowClosed
from storeloop.integrations.whatsapp.models import (
    WebhookPayloadError,
    body_components,
    classify_keyword,
    parse_webhook,
    template_parameter_count,
    window_open,
)

METADATA = {"display_phone_number": "15550001111", "phone_number_id": "1122334455667"}


def wrap(value: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    value = {"messaging_product": "whatsapp", "metadata": METADATA, **value}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"value": value, "field": field}]}],
    }


DELIVERED = wrap(
    {
        "statuses": [
            {
                "id": "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
                "status": "delivered",
                "timestamp": "1698266945",
                "recipient_id": "15551234567",
                "conversation": {"id": "7270c2e", "origin": {"type": "service"}},
                "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"},
                "biz_opaque_callback_data": "order-727",
            }
        ]
    }
)
FAILED = wrap(
    {
        "statuses": [
            {
                "id": "wamid.failed",
                "status": "failed",
                "timestamp": "1698266999",
                "recipient_id": "15551234567",
                "errors": [
                    {
                        "code": 131047,
                        "title": "Re-engagement message",
                        "message": "Re-engagement message",
                        "error_data": {"details": "Message failed to send because more than 24 hours have passed"},
                        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                    }
                ],
            }
        ]
    }
)
INBOUND_TEXT = wrap(
    {
        "contacts": [{"profile": {"name": "Test Name"}, "wa_id": "15551234567"}],
        "messages": [
            {
                "from": "15551234567",
                "id": "wamid.abc",
                "timestamp": "1697043223",
                "type": "text",
                "text": {"body": "STOP"},
            }
        ],
    }
)
BUTTON_REPLY = wrap(
    {
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "447700900123"}],
        "messages": [
            {
                "context": {"from": "15550001111", "id": "wamid.template"},
                "from": "447700900123",
                "id": "wamid.btn",
                "timestamp": "1697043300",
                "type": "button",
                "button": {"payload": "Stop promotions", "text": "Stop promotions"},
            },
            {
                "from": "447700900123",
                "id": "wamid.int",
                "timestamp": "1697043301",
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": "confirm-727", "title": "Confirm"}},
            },
        ],
    }
)


def test_status_update_fields() -> None:
    batch = parse_webhook(DELIVERED)
    assert batch.messages == []
    [status] = batch.statuses
    assert status.wamid.startswith("wamid.HBgL")
    assert (status.status, status.recipient) == ("delivered", "15551234567")
    assert status.timestamp == datetime(2023, 10, 25, 20, 49, 5, tzinfo=UTC)
    assert status.callback_data == "order-727"
    assert (status.conversation_id, status.pricing_category) == ("7270c2e", "service")
    assert status.phone_number_id == "1122334455667"
    assert status.errors == ()
    assert status.error() is None


def test_failed_status_maps_to_the_same_exception_as_the_send_call() -> None:
    [status] = parse_webhook(FAILED).statuses
    assert status.status == "failed"
    assert status.errors[0].code == 131047
    assert "24 hours" in (status.errors[0].details or "")
    assert isinstance(status.error(), WhatsAppWindowClosed)
    opted = copy.deepcopy(FAILED)
    opted["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"] = 131050
    assert isinstance(parse_webhook(opted).statuses[0].error(), WhatsAppRecipientOptedOut)


def test_inbound_text_message() -> None:
    [message] = parse_webhook(INBOUND_TEXT).messages
    assert (message.from_, message.wamid, message.type, message.text) == ("15551234567", "wamid.abc", "text", "STOP")
    assert message.profile_name == "Test Name"
    assert message.timestamp == datetime.fromtimestamp(1697043223, tz=UTC)
    assert message.keyword == "stop"


def test_button_and_interactive_replies() -> None:
    button, interactive = parse_webhook(BUTTON_REPLY).messages
    assert (button.type, button.button_payload, button.button_text) == ("button", "Stop promotions", "Stop promotions")
    assert button.context_wamid == "wamid.template"
    assert button.text is None
    assert button.keyword == "stop"
    assert (interactive.reply_id, interactive.reply_title) == ("confirm-727", "Confirm")
    assert interactive.keyword is None


def test_batched_entries_other_fields_and_system_errors() -> None:
    payload = copy.deepcopy(DELIVERED)
    payload["entry"].append(copy.deepcopy(INBOUND_TEXT["entry"][0]))
    payload["entry"][1]["changes"].append({"field": "message_template_status_update", "value": {"event": "APPROVED"}})
    payload["entry"][0]["changes"][0]["value"]["errors"] = [{"code": 131000, "title": "Something went wrong"}]
    batch = parse_webhook(payload)
    assert len(batch.statuses) == 1
    assert len(batch.messages) == 1
    assert batch.ignored_fields == ["message_template_status_update"]
    assert [e.code for e in batch.errors] == [131000]


def test_unsupported_inbound_type_keeps_its_errors() -> None:
    payload = wrap(
        {
            "messages": [
                {
                    "from": "15551234567",
                    "id": "wamid.u",
                    "timestamp": "1697043223",
                    "type": "unsupported",
                    "errors": [{"code": 131051, "title": "Message type unknown"}],
                }
            ]
        }
    )
    [message] = parse_webhook(payload).messages
    assert message.type == "unsupported"
    assert message.errors[0].code == 131051


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(INBOUND_TEXT)
    node: Any = payload
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return payload


MSG = ["entry", 0, "changes", 0, "value", "messages", 0]


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ([], "$"),
        ({"object": "page", "entry": []}, "$.object"),
        ({"object": "whatsapp_business_account"}, "$.entry"),
        (_broken(["entry", 0], "nope"), "$.entry[0]"),
        (_broken(["entry", 0, "changes", 0, "value"], None), "value"),
        (_broken([*MSG, "id"], KeyError), "messages[0].id"),
        (_broken([*MSG, "timestamp"], "yesterday"), "messages[0].timestamp"),
        (_broken([*MSG, "text"], KeyError), "messages[0].text"),
        (_broken(["entry", 0, "changes", 0, "value", "messages"], {"from": "x"}), "value.messages"),
    ],
)
def test_malformed_payloads_name_the_offending_place(payload: Any, where: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        parse_webhook(payload)
    assert where in info.value.path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", "stop"),
        ("stop", "stop"),
        ("  Stop. ", "stop"),
        ("UNSUBSCRIBE", "stop"),
        ("stop promotions", "stop"),
        ("Opt   Out", "stop"),
        ("START", "start"),
        ("unstop!", "start"),
        ("Help?", "help"),
        ("please stop", None),
        ("stop sending me this", None),
        ("yes", None),
        ("", None),
        (None, None),
    ],
)
def test_keywords_match_the_whole_message_only(text: str | None, expected: str | None) -> None:
    assert classify_keyword(text) == expected


NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "is_open"),
    [
        (timedelta(0), True),
        (timedelta(hours=23, minutes=59), True),
        (timedelta(hours=23, minutes=59, seconds=59), True),
        (timedelta(hours=24), False),
        (timedelta(hours=24, minutes=1), False),
        (timedelta(days=3), False),
        (-timedelta(minutes=2), True),  # clock skew
    ],
)
def test_window_edges(ago: timedelta, is_open: bool) -> None:
    assert window_open(NOW - ago, NOW) is is_open


def test_window_without_inbound_or_naive_times() -> None:
    assert window_open(None, NOW) is False
    with pytest.raises(ValueError, match="timezone-aware"):
        window_open(datetime(2025, 3, 10, 11, 0), NOW)


def test_template_parameter_count_across_components() -> None:
    assert template_parameter_count(None) == 0
    assert template_parameter_count(body_components(["#727", "Friday"])) == 2
    components: list[dict[str, Any]] = [
        {"type": "header", "parameters": [{"type": "text", "text": "Hi"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "727"}]},
        {"type": "footer"},
    ]
    assert template_parameter_count(components) == 4
