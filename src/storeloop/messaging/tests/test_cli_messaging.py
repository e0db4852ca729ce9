"""``storeloop messaging|template|suppression`` through the command's public interface, against the fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storeloop.cli.main import main
from storeloop.consent.models import Suppression
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.integrations.whatsapp.fake import FakeWhatsApp
from storeloop.messaging.channels.factory import close_channels, credentials_of
from storeloop.messaging.models import MessageTemplate, MessagingConnection, TemplateVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_channels() -> Iterator[None]:
    yield
    close_channels()


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_names_the_commands(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("messaging", "template", "suppression"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["template", "save", "--help"])
    out = capsys.readouterr().out
    for option in ("--text", "--html", "--subject", "--variables", "--publish", "--channel", "--locale"):
        assert option in out


# --- messaging connect / test / list -------------------------------------------------------------


def test_connect_smtp_tests_then_stores_and_never_prints_the_password(capsys: Any, store: Any) -> None:
    with FakeSmtpServer() as smtp:
        code, out, _ = run(capsys, "messaging", "connect", "smtp", "--store", str(store.pk), "--host", smtp.host,
                           "--port", str(smtp.port), "--security", "none", "--from-addr", "shop@shop.example",
                           "--from-name", "Test Shop", "--rate", "50", "--connections", "3", "--json")  # fmt: skip
        assert code == 0
        assert json.loads(out) == {
            "store": store.pk, "channel": "email", "provider": "smtp", "messages_per_second": 50.0, "active": True,
            "checked": True, "marketing_cap": "16 h", "quiet_hours": "none",
            "settings": {"host": smtp.host, "port": smtp.port, "security": "none", "from_addr": "shop@shop.example",
                         "from_name": "Test Shop", "connections": 3},
        }  # fmt: skip
        code, out, _ = run(capsys, "messaging", "test", "--store", str(store.pk), "--channel", "email", "--json")
        assert (code, json.loads(out)["result"]) == (0, "ok")
    code, out, _ = run(capsys, "messaging", "list", "--store", str(store.pk), "--json")
    assert [(c["channel"], c["provider"]) for c in json.loads(out)] == [("email", "smtp")]


def test_a_refused_check_stores_nothing_and_keeps_the_working_connection(
    capsys: Any, store: Any, monkeypatch: Any
) -> None:
    with FakeTwilio(seed=1) as twilio:
        base = ["messaging", "connect", "twilio", "--store", str(store.pk), "--account-sid", twilio.account_sid,
                "--from-number", twilio.from_number, "--base-url", twilio.url]  # fmt: skip
        code, _, err = run(capsys, *base, "--auth-token", "wrong-token")
        assert code == 2
        assert "channel_check_failed" in err
        assert "wrong-token" not in err
        assert not MessagingConnection.objects.exists()

        monkeypatch.setenv("STORELOOP_TWILIO_AUTH_TOKEN", twilio.auth_token)  # the secret from the environment
        code, out, _ = run(capsys, *base)
        assert code == 0
        assert twilio.auth_token not in out
        stored = MessagingConnection.objects.get()
        assert credentials_of(stored) == {"account_sid": twilio.account_sid, "auth_token": twilio.auth_token}

        code, _, err = run(capsys, *base, "--auth-token", "another-wrong-one")
        assert code == 2
        assert credentials_of(MessagingConnection.objects.get())["auth_token"] == twilio.auth_token
        assert run(capsys, "messaging", "test", "--store", str(store.pk), "--channel", "sms")[0] == 0


def test_connect_whatsapp_and_no_check(capsys: Any, store: Any) -> None:
    with FakeWhatsApp(seed=2) as wa:
        account = ["--access-token", wa.access_token, "--phone-number-id", wa.phone_number_id, "--base-url", wa.url]
        code, out, _ = run(capsys, "messaging", "connect", "whatsapp", "--store", str(store.pk), *account, "--json")
        assert (code, json.loads(out)["checked"]) == (0, True)
    code, out, _ = run(capsys, "messaging", "connect", "whatsapp", "--store", str(store.pk), "--access-token",
                       "unchecked", "--phone-number-id", "42", "--no-check", "--json")  # fmt: skip
    assert (code, json.loads(out)["checked"], json.loads(out)["settings"]["phone_number_id"]) == (0, False, "42")
    assert credentials_of(MessagingConnection.objects.get()) == {"access_token": "unchecked"}
    code, out, _ = run(capsys, "messaging", "connect", "whatsapp", "--store", str(store.pk), "--access-token",
                       "unchecked", "--phone-number-id", "42", "--account-rate", "40", "--no-check",
                       "--json")  # fmt: skip
    assert (code, json.loads(out)["settings"]["account_messages_per_second"]) == (0, 40.0)


def test_messaging_policy_sets_and_resets_a_stores_cap_and_quiet_hours(capsys: Any, store: Any) -> None:
    def policy(*argv: str) -> tuple[int, Any, str]:
        code, out, err = run(capsys, "messaging", "policy", "--store", str(store.pk), "--channel", "sms", *argv)
        return code, json.loads(out) if code == 0 else out, err

    code, _, err = policy("--json")
    assert (code, "channel_not_configured" in err) == (2, True)  # no SMS connection yet
    MessagingConnection.objects.create(store=store, channel="sms", provider="twilio", credentials="{}")
    code, out, _ = policy("--cap-hours", "12", "--quiet-hours", "22:00-07:30", "--json")
    assert (code, out["marketing_cap"], out["quiet_hours"]) == (0, "12 h", "22:00-07:30")
    code, out, _ = policy("--quiet-hours", "none", "--json")  # the cap left out: back to the default
    assert (code, out["marketing_cap"], out["quiet_hours"]) == (0, "24 h", "none")
    code, out, _ = policy("--json")
    assert (out["marketing_cap"], out["quiet_hours"]) == ("24 h", "21:00-08:00")
    with pytest.raises(SystemExit) as bad:
        policy("--quiet-hours", "late")
    assert bad.value.code == 2
    assert "HH:MM-HH:MM" in capsys.readouterr().err
    code, _, err = policy("--cap-hours", "-3")
    assert (code, "cap_hours must be between 0" in err) == (2, True)
    connection = MessagingConnection.objects.get()
    assert (connection.marketing_cap_hours, connection.quiet_hours_start) == (None, None)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["smtp", "--host", "smtp.example.com", "--port", "0", "--from-addr", "a@b.example"], "invalid_port"),
        (["smtp", "--host", "smtp.example.com", "--from-addr", "nobody"], "invalid_address"),
        (["twilio", "--account-sid", "AC1", "--auth-token", "t", "--from-number", "+15005550006"],
         "invalid_account_sid"),
        (["whatsapp", "--access-token", "t", "--phone-number-id", "abc"], "invalid_phone_number_id"),
        (["whatsapp", "--access-token", "t", "--phone-number-id", "42", "--account-rate", "0"], "invalid_rate"),
        (["smtp", "--host", "h.example", "--from-addr", "a@b.example", "--ca-cert", "/nonexistent.pem"],
         "unreadable_file"),
    ],
)  # fmt: skip
def test_bad_connection_input_is_refused_and_stores_nothing(
    capsys: Any, store: Any, argv: list[str], code: str
) -> None:
    exit_code, _, err = run(capsys, "messaging", "connect", argv[0], "--store", str(store.pk), *argv[1:])
    assert exit_code == 2
    assert f"[{code}]" in err
    assert not MessagingConnection.objects.exists()


def test_missing_store_and_missing_connection(capsys: Any, store: Any) -> None:
    code, _, err = run(capsys, "template", "list", "--store", "999")
    assert (code, "store_not_found" in err) == (2, True)
    code, _, err = run(capsys, "messaging", "test", "--store", str(store.pk), "--channel", "sms")
    assert (code, "channel_not_configured" in err) == (2, True)


# --- templates -----------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "v1": tmp_path / "v1.txt",
        "v2": tmp_path / "v2.txt",
        "html": tmp_path / "mail.html",
        "bad": tmp_path / "bad.txt",
        "sample": tmp_path / "sample.json",
    }
    paths["v1"].write_text("Hi {{ contact.first_name }}, order {{ order.number }} is confirmed.", encoding="utf-8")
    paths["v2"].write_text("Hello {{ contact.first_name }}: order {{ order.number }}, {{ order.total }}.")
    paths["html"].write_text("<p>Hi {{ contact.first_name }}</p>")
    paths["bad"].write_text("Hi {{ contact.first_name }}\n\n{{ coupon }}\n")
    paths["sample"].write_text(json.dumps({"contact": {"first_name": "Ann"}, "order": {"total": "9.99"}}))
    return paths


def test_template_save_publish_show_preview_and_rollback(capsys: Any, store: Any, files: dict[str, Path]) -> None:
    target = ["order-confirmation", "--store", str(store.pk), "--channel", "sms"]
    code, out, _ = run(capsys, "template", "save", *target, "--text", str(files["v1"]), "--publish", "--json")
    template = MessageTemplate.objects.get()
    assert (code, json.loads(out)) == (0, {"template_id": template.pk, "version": 1, "published": True})
    code, out, _ = run(capsys, "template", "save", *target, "--text", str(files["v2"]), "--variables", "contact,order",
                       "--json")  # fmt: skip
    assert json.loads(out)["version"] == 2
    assert TemplateVersion.objects.get(number=2).variables == ["contact", "order"]

    code, out, _ = run(capsys, "template", "list", "--store", str(store.pk), "--json")
    assert [(t["key"], t["published_version"], t["latest_version"]) for t in json.loads(out)] == [
        ("order-confirmation", 1, 2)
    ]
    code, out, _ = run(capsys, "template", "show", *target, "--json")
    assert [(v["number"], v["published"]) for v in json.loads(out)["versions"]] == [(2, False), (1, True)]
    code, out, _ = run(capsys, "template", "show", *target, "--version", "2", "--json")
    assert json.loads(out)["body_text"] == files["v2"].read_text()

    code, out, _ = run(capsys, "template", "preview", *target, "--json")
    assert json.loads(out)["text"] == "Hi Zoë, order 1042 is confirmed."
    code, out, _ = run(capsys, "template", "preview", *target, "--version", "2", "--sample", str(files["sample"]),
                       "--json")  # fmt: skip
    assert json.loads(out) == {
        "version": 2, "subject": "", "text": "Hello Ann: order 1042, 9.99.", "html": "", "wa_parameters": [],
        "sms": {"encoding": "GSM-7", "characters": 28, "segments": 1, "non_gsm": []},
    }  # fmt: skip
    code, out, _ = run(capsys, "template", "preview", *target)
    assert "Hi Zoë, order 1042 is confirmed." in out
    assert "1 segment(s)" in out

    assert run(capsys, "template", "publish", *target, "--version", "2")[0] == 0
    assert MessageTemplate.objects.get().published.number == 2  # type: ignore[union-attr]
    code, out, _ = run(capsys, "template", "rollback", *target, "--json")
    assert json.loads(out)["published_version"] == 1
    code, _, err = run(capsys, "template", "rollback", *target)
    assert (code, "no_older_version" in err) == (2, True)
    code, _, err = run(capsys, "template", "publish", *target, "--version", "7")
    assert (code, "version_not_found" in err) == (2, True)
    assert MessageTemplate.objects.get().published.number == 1  # type: ignore[union-attr]


def test_template_save_reports_the_line_and_writes_nothing(capsys: Any, store: Any, files: dict[str, Path]) -> None:
    target = ["promo", "--store", str(store.pk), "--channel", "email", "--subject", "Sale"]
    code, _, err = run(capsys, "template", "save", *target, "--text", str(files["bad"]), "--html", str(files["html"]))
    assert code == 2
    assert err.strip() == (
        "error [invalid_template]: body_text, line 3: unknown variable 'coupon' (declared: contact, order, "
        "preferences_url, store, unsubscribe_url)"
    )
    code, _, err = run(capsys, "template", "save", *target, "--text", "/nonexistent.txt")
    assert (code, "unreadable_file" in err) == (2, True)
    assert not MessageTemplate.objects.exists()
    assert not TemplateVersion.objects.exists()


def test_email_template_from_text_and_html_files(capsys: Any, store: Any, files: dict[str, Path]) -> None:
    target = ["welcome", "--store", str(store.pk), "--channel", "email", "--locale", "de"]
    code, _, _ = run(capsys, "template", "save", *target, "--subject", "Hallo {{ contact.first_name }}", "--text",
                     str(files["v1"]), "--html", str(files["html"]), "--publish")  # fmt: skip
    assert code == 0
    code, out, _ = run(capsys, "template", "preview", *target, "--json")
    preview = json.loads(out)
    assert (preview["subject"], preview["html"], preview["sms"]) == ("Hallo Zoë", "<p>Hi Zoë</p>", None)


def test_preview_with_a_broken_sample_file(capsys: Any, store: Any, files: dict[str, Path], tmp_path: Path) -> None:
    target = ["order-confirmation", "--store", str(store.pk), "--channel", "sms"]
    run(capsys, "template", "save", *target, "--text", str(files["v1"]))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = run(capsys, "template", "preview", *target, "--sample", str(broken))
    assert (code, "invalid_sample" in err) == (2, True)
    broken.write_text(json.dumps({"secrets": {}}))
    code, _, err = run(capsys, "template", "preview", *target, "--sample", str(broken))
    assert (code, "invalid_sample" in err) == (2, True)


# --- suppressions --------------------------------------------------------------------------------


def test_suppression_add_list_remove(capsys: Any, store: Any, other_store: Any) -> None:
    base = ["--store", str(store.pk), "--channel", "email"]
    code, out, _ = run(capsys, "suppression", "add", *base, "--address", "Ann@Example.com", "--reason", "complaint",
                       "--json")  # fmt: skip
    body = json.loads(out)
    assert (code, body["address"], body["reason"], body["created"]) == (0, "ann@example.com", "complaint", True)
    code, out, _ = run(capsys, "suppression", "add", *base, "--address", "ann@example.com")
    assert "already suppressed" in out
    run(capsys, "suppression", "add", "--store", str(other_store.pk), "--channel", "email", "--address", "x@y.example")
    code, out, _ = run(capsys, "suppression", "list", "--store", str(store.pk), "--json")
    assert [(s["channel"], s["address"], s["reason"]) for s in json.loads(out)] == [
        ("email", "ann@example.com", "complaint")
    ]
    code, _, err = run(capsys, "suppression", "remove", "--store", str(store.pk), "--channel", "email", "--address",
                       "x@y.example")  # fmt: skip
    assert (code, "suppression_not_found" in err) == (2, True)
    assert run(capsys, "suppression", "remove", *base, "--address", "ANN@example.com")[0] == 0
    assert list(Suppression.objects.values_list("store_id", "address")) == [(other_store.pk, "x@y.example")]


def test_suppression_of_a_bad_address_is_refused(capsys: Any, store: Any) -> None:
    code, _, err = run(capsys, "suppression", "add", "--store", str(store.pk), "--channel", "sms", "--address", "call")
    assert (code, "invalid_address" in err) == (2, True)
    assert not Suppression.objects.exists()
