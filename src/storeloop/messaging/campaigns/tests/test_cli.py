"""``storeloop campaign …`` through the command's entry point."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from storeloop.cli.main import main
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.tests.conftest import person
from storeloop.messaging.channels.connections import connect_smtp
from storeloop.messaging.models import Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channels_closed")]
GERMANS = '{"all": [{"field": "country", "op": "eq", "value": "DE"}]}'


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def create(capsys: Any, store: Any, *extra: str) -> dict[str, Any]:
    code, out, err = run(capsys, "campaign", "create", "--store", str(store.pk), "--name", "Spring", "--template",
                         "news", "--channel", "email", "--json", *extra)  # fmt: skip
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_create_preview_send_here_and_show(capsys: Any, store: Any, news: Any, smtp: FakeSmtpServer) -> None:
    connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none", from_addr="shop@shop.example",
                 messages_per_second=1000)  # fmt: skip
    people = [person(store, f"p{i}", country="DE", consent=("email",)) for i in range(3)]
    person(store, "nope", country="DE")
    person(store, "french", country="FR", consent=("email",))

    code, out, _ = run(capsys, "campaign", "preview", "--store", str(store.pk), "--audience", GERMANS, "--channel",
                       "email", "--json")  # fmt: skip
    assert (code, json.loads(out)) == (0, {"audience": 4, "eligible": 3})

    created = create(capsys, store, "--audience", GERMANS)
    assert (created["state"], created["audience"]) == ("draft", json.loads(GERMANS))
    code, out, _ = run(capsys, "campaign", "send", "--campaign", str(created["id"]), "--here")
    assert code == 0
    assert f"Campaign {created['id']} completed: 3 sent, 0 failed, 1 suppressed, 0 queued, 0 held." in out
    assert Counter(m.rcpt_tos[0] for m in smtp.messages) == Counter({p.email: 1 for p in people})

    code, out, _ = run(capsys, "campaign", "show", "--campaign", str(created["id"]), "--json")
    shown = json.loads(out)
    assert shown["state"] == "completed"
    assert {k: v for k, v in shown["figures"].items() if v} == {"targeted": 4, "suppressed": 1, "sent": 3,
                                                                "messages": 3}  # fmt: skip
    code, out, _ = run(capsys, "campaign", "show", "--campaign", str(created["id"]))
    assert code == 0
    assert f"Campaign {created['id']} Spring (email, marketing): completed" in out
    code, out, _ = run(capsys, "campaign", "show", "--campaign", str(created["id"]), "--follow")
    assert code == 0
    assert f"Campaign {created['id']} completed: 3 sent, 0 failed, 1 suppressed, 0 queued, 0 held." in out
    code, out, _ = run(capsys, "campaign", "list", "--store", str(store.pk), "--json")
    assert [c["id"] for c in json.loads(out)] == [created["id"]]


def test_schedule_pause_resume_cancel(capsys: Any, store: Any, news: Any, tmp_path: Path) -> None:
    audience = tmp_path / "audience.json"
    audience.write_text(GERMANS)
    campaign_id = str(create(capsys, store, "--audience-file", str(audience))["id"])
    code, out, _ = run(capsys, "campaign", "schedule", "--campaign", campaign_id, "--at", "2030-06-01T10:00:00",
                       "--local-time")  # fmt: skip
    assert (code, out.strip()) == (0, f"Campaign {campaign_id} scheduled for 2030-06-01 10:00 in each recipient's "
                                      "time zone.")  # fmt: skip
    for action, state in [("pause", "paused"), ("resume", "scheduled"), ("cancel", "cancelled")]:
        code, out, _ = run(capsys, "campaign", action, "--campaign", campaign_id)
        assert (code, out.strip()) == (0, f"Campaign {campaign_id} is {state}.")
    code, _, err = run(capsys, "campaign", "resume", "--campaign", campaign_id)
    assert (code, err.strip()) == (2, f"error [campaign_state]: campaign {campaign_id} is cancelled; only paused "
                                      "campaigns resume")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--audience", "{nope"], "error [invalid_json]: --audience is not valid JSON: "),
        (["--audience", '{"field": "age", "op": "gt", "value": 30}'],
         "error [invalid_audience]: invalid audience at (root): unknown field 'age'; fields are country, "),
        (["--audience", GERMANS, "--custom", "[1]"], "error [invalid_custom]: custom is an object whose keys are "),
        (["--audience-file", "/nonexistent/audience.json"], "error [invalid_file]: cannot read "),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_is_created(
    capsys: Any, store: Any, news: Any, argv: list[str], error: str
) -> None:
    code, _, err = run(capsys, "campaign", "create", "--store", str(store.pk), "--name", "Spring", "--template",
                       "news", "--channel", "email", *argv)  # fmt: skip
    assert code == 2
    assert err.startswith(error)
    assert not Campaign.objects.exists()


def test_unknown_ids_are_clear_errors(capsys: Any, db: None) -> None:
    assert (
        run(capsys, "campaign", "show", "--campaign", "99")[2].strip() == "error [campaign_not_found]: no campaign 99"
    )
    code, _, err = run(capsys, "campaign", "list", "--store", "98")
    assert (code, err.strip()) == (2, "error [store_not_found]: no store 98")
    assert not Message.objects.exists()
