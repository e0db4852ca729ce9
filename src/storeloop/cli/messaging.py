"""``storeloop messaging connect|test|list``, ``storeloop template …`` and ``storeloop suppression …``."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from storeloop.cli.output import console, print_json, print_table

CHANNELS = ["email", "sms", "whatsapp"]
REASONS = ["hard_bounce", "complaint", "provider_opt_out", "manual"]
# Secrets may come from the environment instead of the command line (shell history, `ps`).
SECRET_ENV = {
    "password": "STORELOOP_SMTP_PASSWORD",
    "webhook_secret": "STORELOOP_EMAIL_WEBHOOK_SECRET",
    "auth_token": "STORELOOP_TWILIO_AUTH_TOKEN",
    "access_token": "STORELOOP_WHATSAPP_ACCESS_TOKEN",
    "app_secret": "STORELOOP_WHATSAPP_APP_SECRET",
}


def register(sub: Any) -> None:
    _register_messaging(sub)
    _register_template(sub)
    _register_suppression(sub)


def _secret_help(name: str, what: str) -> str:
    return f"{what} (or set {SECRET_ENV[name]})"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=int, required=True, help="store id")
    parser.add_argument("--rate", type=float, help="messages per second for this store and channel")
    parser.add_argument("--account-rate", type=float, dest="account_rate",
                        help="messages per second of the provider account, shared by every store connected "
                             "to it (an agency's relay login, Twilio account or WhatsApp number)")  # fmt: skip
    parser.add_argument("--no-check", action="store_true", help="store without testing against the provider")
    parser.add_argument("--json", action="store_true", help="print the connection as JSON")
    parser.set_defaults(handler=_connect)


def _register_messaging(sub: Any) -> None:
    messaging = sub.add_parser("messaging", help="connect e-mail, SMS and WhatsApp providers and test them")
    msub = messaging.add_subparsers(dest="messaging_command", metavar="<action>", required=True)

    connect = msub.add_parser(
        "connect",
        help="connect a store to a provider (secrets are encrypted)",
        description="Checks the settings, tests them against the provider (unless --no-check) and only then "
        "stores them; connecting again replaces the store's connection for that channel.",
    )
    psub = connect.add_subparsers(dest="provider", metavar="<provider>", required=True)
    smtp = psub.add_parser("smtp", help="e-mail through an SMTP relay")
    smtp.add_argument("--host", required=True)
    smtp.add_argument("--port", type=int, default=587, help="default 587")
    smtp.add_argument("--security", choices=["starttls", "tls", "none"], default="starttls",
                      help="starttls (587), tls (465) or none (loopback relays only)")  # fmt: skip
    smtp.add_argument("--username", default="")
    smtp.add_argument("--password", help=_secret_help("password", "SMTP password"))
    smtp.add_argument("--from-addr", required=True, help="sender address, e.g. shop@shop.example")
    smtp.add_argument("--from-name", default="")
    smtp.add_argument("--reply-to", default="")
    smtp.add_argument("--return-path", default="", help="bounce address (envelope sender)")
    smtp.add_argument("--message-id-domain", default="", help="domain of the Message-ID (default: the sender's)")
    smtp.add_argument("--unsubscribe-mailto", default="", help="address that unsubscribes whoever writes to it")
    smtp.add_argument("--ca-cert", type=Path, help="PEM file of the CA to trust for a private relay")
    smtp.add_argument("--webhook-secret", help=_secret_help("webhook_secret", "secret of the bounce webhook"))
    smtp.add_argument("--connections", type=int, default=2,
                      help="SMTP sessions per worker process, 1-10 (default 2; the relay may cap them)")  # fmt: skip
    _common(smtp)

    twilio = psub.add_parser("twilio", help="SMS through Twilio")
    twilio.add_argument("--account-sid", required=True, help="AC…")
    twilio.add_argument("--auth-token", help=_secret_help("auth_token", "auth token"))
    twilio.add_argument("--from-number", default="", help="E.164 sender, short code or alphanumeric id")
    twilio.add_argument("--messaging-service-sid", default="", help="MG… (preferred over --from-number)")
    twilio.add_argument("--status-callback", default="", help="status webhook URL (default: this store's)")
    twilio.add_argument("--base-url", default="", help="API base URL (default https://api.twilio.com)")
    _common(twilio)

    whatsapp = psub.add_parser("whatsapp", help="WhatsApp through the Cloud API")
    whatsapp.add_argument("--access-token", help=_secret_help("access_token", "system-user access token"))
    whatsapp.add_argument("--phone-number-id", required=True, help="numeric id of the business phone number")
    whatsapp.add_argument("--base-url", default="", help="default https://graph.facebook.com")
    whatsapp.add_argument("--api-version", default="", help="e.g. v21.0")
    whatsapp.add_argument("--app-secret", help=_secret_help("app_secret", "Meta app secret (signs webhooks)"))
    whatsapp.add_argument("--verify-token", default="", help="token for the webhook verification handshake")
    _common(whatsapp)

    test = msub.add_parser("test", help="test a store's stored connection against the provider")
    test.add_argument("--store", type=int, required=True, help="store id")
    test.add_argument("--channel", choices=CHANNELS, required=True)
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=_test)

    lst = msub.add_parser("list", help="a store's messaging connections (never their secrets)")
    lst.add_argument("--store", type=int, required=True, help="store id")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=_list_connections)

    policy = msub.add_parser(
        "policy", help="a store's marketing frequency cap and quiet hours on a channel",
        description="Set the least time between two marketing messages to one contact and the quiet hours "
                    "(recipient's local time) on a connected channel. An option left out goes back to its "
                    "default: 16 h (e-mail) or 24 h (SMS, WhatsApp); quiet hours 21:00-08:00 for SMS and WhatsApp, "
                    "none for e-mail.",
    )  # fmt: skip
    policy.add_argument("--store", type=int, required=True, help="store id")
    policy.add_argument("--channel", choices=CHANNELS, required=True)
    policy.add_argument("--cap-hours", type=float, help="hours between two marketing messages per contact (0: no cap)")
    policy.add_argument("--quiet-hours", type=_quiet_hours, metavar="HH:MM-HH:MM|none",
                        help="e.g. 22:00-07:30; 'none' for no quiet hours")  # fmt: skip
    policy.add_argument("--json", action="store_true")
    policy.set_defaults(handler=_policy)


def _template_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", help="template key, e.g. order-confirmation")
    parser.add_argument("--store", type=int, required=True, help="store id")
    parser.add_argument("--channel", choices=CHANNELS, required=True)
    parser.add_argument("--locale", default="en", help="default en")
    parser.add_argument("--json", action="store_true")


def _register_template(sub: Any) -> None:
    template = sub.add_parser("template", help="save, publish and preview message templates")
    tsub = template.add_subparsers(dest="template_command", metavar="<action>", required=True)

    lst = tsub.add_parser("list", help="a store's templates and their published versions")
    lst.add_argument("--store", type=int, required=True, help="store id")
    lst.add_argument("--channel", choices=CHANNELS)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=_template_list)

    show = tsub.add_parser("show", help="a template's versions, or one version's content with --version")
    _template_target(show)
    show.add_argument("--version", type=int, help="print this version's content")
    show.set_defaults(handler=_template_show)

    save = tsub.add_parser(
        "save",
        help="save a new draft version from files (validated; publish it to use it)",
        description="Bodies are Jinja2 in a sandbox; variables are contact, order, store and custom, plus "
        "unsubscribe_url and preferences_url. A problem is reported with its field and line.",
    )
    _template_target(save)
    save.add_argument("--subject", default="", help="e-mail subject (a template too)")
    save.add_argument("--text", type=Path, help="file with the plain-text body ('-' reads stdin)")
    save.add_argument("--html", type=Path, help="file with the HTML body (e-mail only)")
    save.add_argument("--variables", nargs="+", default=["contact", "order", "store"],
                      help="declared variables (space or comma separated; default: contact order store)")  # fmt: skip
    save.add_argument("--wa-template", default="", help="WhatsApp: approved template name for outside the 24 h")
    save.add_argument("--wa-language", default="", help="WhatsApp: the approved template's language, e.g. en_US")
    save.add_argument("--wa-param", action="append", default=[], help="WhatsApp: a parameter expression (repeat)")
    save.add_argument("--description", default="", help="kept from the template's first save")
    save.add_argument("--publish", action="store_true", help="publish the new version at once")
    save.set_defaults(handler=_template_save)

    publish = tsub.add_parser("publish", help="publish a version (an older one is a rollback)")
    _template_target(publish)
    publish.add_argument("--version", type=int, required=True)
    publish.set_defaults(handler=_template_publish)

    rollback = tsub.add_parser("rollback", help="publish the version before the published one (or --version)")
    _template_target(rollback)
    rollback.add_argument("--version", type=int, help="an older version to publish")
    rollback.set_defaults(handler=_template_rollback)

    preview = tsub.add_parser("preview", help="render a version with sample data")
    _template_target(preview)
    preview.add_argument("--version", type=int, help="default: the published version, else the newest")
    preview.add_argument("--sample", type=Path, help='JSON file over the built-in sample, e.g. {"order": {…}}')
    preview.set_defaults(handler=_template_preview)


def _register_suppression(sub: Any) -> None:
    suppression = sub.add_parser("suppression", help="addresses nothing is sent to (bounces, complaints, blocks)")
    ssub = suppression.add_subparsers(dest="suppression_command", metavar="<action>", required=True)
    lst = ssub.add_parser("list", help="a store's suppression list, newest first")
    lst.add_argument("--store", type=int, required=True, help="store id")
    lst.add_argument("--channel", choices=CHANNELS)
    lst.add_argument("--reason", choices=REASONS)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=_suppression_list)
    add = ssub.add_parser("add", help="suppress an address, even for transactional messages")
    add.add_argument("--store", type=int, required=True, help="store id")
    add.add_argument("--channel", choices=CHANNELS, required=True)
    add.add_argument("--address", required=True, help="e-mail address, or phone number in E.164 (+4930…)")
    add.add_argument("--reason", choices=REASONS, default="manual")
    add.add_argument("--detail", default="")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=_suppression_add)
    remove = ssub.add_parser("remove", help="take an address off the list")
    remove.add_argument("--store", type=int, required=True, help="store id")
    remove.add_argument("--channel", choices=CHANNELS, required=True)
    remove.add_argument("--address", required=True)
    remove.add_argument("--reason", default="", help="why it is removed (kept in the record)")
    remove.set_defaults(handler=_suppression_remove)


# --- helpers -------------------------------------------------------------------------------------


def _store(store_id: int) -> Any:
    from storeloop.core.errors import NotFound
    from storeloop.stores.models import Store

    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        raise NotFound(f"no store {store_id}", code="store_not_found")
    return store


def _read(path: Path | None, what: str) -> str:
    from storeloop.core.errors import ValidationError

    if path is None:
        return ""
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read the {what} file {str(path)!r}: {exc}", code="unreadable_file") from None


def _secret(args: argparse.Namespace, name: str) -> str:
    value: str | None = getattr(args, name, None)
    return value if value is not None else os.environ.get(SECRET_ENV[name], "")


# --- messaging -----------------------------------------------------------------------------------


def _connection_dict(connection: Any) -> dict[str, Any]:
    return {
        "store": connection.store_id,
        "channel": connection.channel,
        "provider": connection.provider,
        "settings": connection.settings,
        "messages_per_second": connection.messages_per_second,
        **_marketing_rules(connection),
        "active": connection.active,
    }


def _marketing_rules(connection: Any) -> dict[str, str]:
    from storeloop.messaging.policies import MarketingPolicy

    policy = MarketingPolicy.for_channel(connection.channel, connection.marketing_cap_hours,
                                         connection.quiet_hours_start, connection.quiet_hours_end)  # fmt: skip
    hours = policy.cap.total_seconds() / 3600
    quiet = policy.quiet_hours
    return {
        "marketing_cap": f"{hours:g} h" if hours else "none",
        "quiet_hours": f"{quiet[0]:%H:%M}-{quiet[1]:%H:%M}" if quiet else "none",
    }


def _connect_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``connect_*`` arguments; optional ones only when given, so defaults stay the service's."""
    kwargs: dict[str, Any] = {"store_id": args.store, "messages_per_second": args.rate,
                              "account_messages_per_second": args.account_rate}  # fmt: skip
    if args.provider == "smtp":
        kwargs.update(host=args.host, port=args.port, security=args.security, username=args.username,
                      password=_secret(args, "password"), from_addr=args.from_addr, from_name=args.from_name,
                      reply_to=args.reply_to, return_path=args.return_path,
                      message_id_domain=args.message_id_domain, unsubscribe_mailto=args.unsubscribe_mailto,
                      ca_cert=_read(args.ca_cert, "CA certificate"), connections=args.connections)  # fmt: skip
        optional = {"webhook_secret": _secret(args, "webhook_secret")}
    elif args.provider == "twilio":
        kwargs.update(account_sid=args.account_sid, auth_token=_secret(args, "auth_token"),
                      from_number=args.from_number, messaging_service_sid=args.messaging_service_sid,
                      status_callback=args.status_callback, base_url=args.base_url)  # fmt: skip
        optional = {}
    else:
        kwargs.update(access_token=_secret(args, "access_token"), phone_number_id=args.phone_number_id,
                      base_url=args.base_url, api_version=args.api_version)  # fmt: skip
        optional = {"app_secret": _secret(args, "app_secret"), "verify_token": args.verify_token}
    kwargs.update({k: v for k, v in optional.items() if v})
    return kwargs


class _Rollback(Exception):
    def __init__(self, connection: Any) -> None:
        self.connection = connection


def _connect(args: argparse.Namespace) -> int:
    from django.db import transaction

    from storeloop.messaging.channels import connections

    providers: dict[str, Callable[..., Any]] = {
        "smtp": connections.connect_smtp,
        "twilio": connections.connect_twilio,
        "whatsapp": connections.connect_whatsapp,
    }
    connect = providers[args.provider]
    kwargs = _connect_kwargs(args)
    if not args.no_check:
        # Validate and build the connection in a transaction that is always rolled back, test it
        # against the provider outside any transaction, and store it only if the provider agrees:
        # wrong credentials change nothing (not even a connection that already worked).
        try:
            with transaction.atomic():
                raise _Rollback(connect(**kwargs))
        except _Rollback as trial:
            with console.status(f"Testing {trial.connection.get_provider_display()}…"):
                connections.check_channel(trial.connection)
    connection = connect(**kwargs)
    if args.json:
        print_json({**_connection_dict(connection), "checked": not args.no_check})
    else:
        checked = "tested and " if not args.no_check else ""
        console.print(f"[green]Connected[/green] store {args.store} to {connection.get_provider_display()} "
                      f"({connection.channel}): {checked}stored.")  # fmt: skip
    return 0


def _test(args: argparse.Namespace) -> int:
    from storeloop.messaging.channels.connections import check_channel
    from storeloop.messaging.selectors import connection_for_channel

    connection = connection_for_channel(store_id=args.store, channel=args.channel)
    with console.status(f"Testing {connection.get_provider_display()}…"):
        result = check_channel(connection)
    if args.json:
        print_json({**_connection_dict(connection), "result": result})
    else:
        console.print(f"{connection.get_provider_display()} ({connection.channel}): [green]{result}[/green]")
    return 0


def _quiet_hours(value: str) -> tuple[dt.time, dt.time]:
    if value.strip().lower() == "none":
        return dt.time(0), dt.time(0)  # the same start and end: no quiet hours
    try:
        start, end = (dt.time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError("quiet hours are HH:MM-HH:MM, e.g. 21:00-08:00, or 'none'") from None
    return start, end


def _policy(args: argparse.Namespace) -> int:
    from storeloop.messaging.channels.connections import set_marketing_policy

    connection = set_marketing_policy(args.store, args.channel, cap_hours=args.cap_hours, quiet_hours=args.quiet_hours)
    if args.json:
        print_json(_connection_dict(connection))
    else:
        rules = _connection_dict(connection)
        console.print(f"{connection.channel} marketing for store {connection.store_id}: cap {rules['marketing_cap']}, "
                      f"quiet hours {rules['quiet_hours']}")  # fmt: skip
    return 0


def _list_connections(args: argparse.Namespace) -> int:
    from storeloop.messaging.selectors import connection_list

    rows = [_connection_dict(c) for c in connection_list(store_id=_store(args.store).pk)]
    if args.json:
        print_json(rows)
    else:
        print_table("Messaging connections", ["channel", "provider", "rate/s", "marketing cap", "quiet hours",
                                              "active", "settings"],
                    [[r["channel"], r["provider"], r["messages_per_second"], r["marketing_cap"], r["quiet_hours"],
                      r["active"],
                      ", ".join(f"{k}={v}" for k, v in r["settings"].items() if k != "ca_cert")]
                     for r in rows])  # fmt: skip
    return 0


# --- templates -----------------------------------------------------------------------------------


def _template(args: argparse.Namespace) -> Any:
    from storeloop.messaging.selectors import template_by_key

    return template_by_key(store=_store(args.store), key=args.key, channel=args.channel, locale=args.locale)


def _template_dict(template: Any) -> dict[str, Any]:
    return {
        "id": template.pk,
        "key": template.key,
        "channel": template.channel,
        "locale": template.locale,
        "description": template.description,
        "published_version": template.published.number if template.published else None,
        "latest_version": getattr(template, "latest_version", None),
    }


def _version_dict(version: Any, published_id: int | None) -> dict[str, Any]:
    return {
        "number": version.number,
        "published": version.pk == published_id,
        "variables": version.variables,
        "subject": version.subject,
        "body_text": version.body_text,
        "body_html": version.body_html,
        "wa_template_name": version.wa_template_name,
        "wa_language": version.wa_language,
        "wa_parameters": version.wa_parameters,
        "created_at": version.created_at,
        "created_by": version.created_by,
    }


def _template_list(args: argparse.Namespace) -> int:
    from storeloop.messaging.selectors import template_list

    rows = [_template_dict(t) for t in template_list(store=_store(args.store), channel=args.channel)]
    if args.json:
        print_json(rows)
    else:
        print_table("Templates", ["id", "key", "channel", "locale", "published", "latest"],
                    [[r["id"], r["key"], r["channel"], r["locale"], r["published_version"] or "—",
                      r["latest_version"]] for r in rows])  # fmt: skip
    return 0


def _template_show(args: argparse.Namespace) -> int:
    from storeloop.messaging.selectors import version_of

    template = _template(args)
    if args.version is not None:
        version = _version_dict(version_of(template, args.version), template.published_id)
        if args.json:
            print_json(version)
        else:
            for field in ("subject", "body_text", "body_html"):
                if version[field]:
                    console.rule(f"v{version['number']} {field}")
                    console.print(version[field], markup=False, highlight=False)
        return 0
    versions = [_version_dict(v, template.published_id) for v in template.versions.all()]
    if args.json:
        print_json({**_template_dict(template), "versions": versions})
    else:
        print_table(f"{template.key} ({template.channel}, {template.locale})",
                    ["version", "published", "created", "by", "subject / text"],
                    [[v["number"], "yes" if v["published"] else "", v["created_at"], v["created_by"],
                      (v["subject"] or v["body_text"]).splitlines()[0][:60] if (v["subject"] or v["body_text"])
                      else ""] for v in versions])  # fmt: skip
    return 0


def _template_save(args: argparse.Namespace) -> int:
    import getpass

    from storeloop.messaging.templates import TemplateRepository

    store = _store(args.store)
    variables = [name for item in args.variables for name in item.split(",") if name.strip()]
    repo = TemplateRepository()
    version = repo.save_template(
        store, args.key, args.channel, locale=args.locale, subject=args.subject,
        body_text=_read(args.text, "text"), body_html=_read(args.html, "HTML"),
        variables=[v.strip() for v in variables], wa_template_name=args.wa_template, wa_language=args.wa_language,
        wa_parameters=args.wa_param, description=args.description, created_by=f"cli:{getpass.getuser()}",
    )  # fmt: skip
    if args.publish:
        repo.publish(version)
    if args.json:
        print_json({"template_id": version.template_id, "version": version.number, "published": args.publish})
    else:
        state = "published" if args.publish else "saved as a draft; publish it with `storeloop template publish`"
        console.print(f"{args.key} ({args.channel}, {args.locale}) v{version.number} {state}.")
    return 0


def _published(args: argparse.Namespace, version: Any) -> int:
    from storeloop.messaging.templates import TemplateRepository

    TemplateRepository().publish(version)
    if args.json:
        print_json({"key": args.key, "channel": args.channel, "locale": args.locale, "published_version":
                    version.number})  # fmt: skip
    else:
        console.print(f"{args.key} ({args.channel}, {args.locale}): v{version.number} is published.")
    return 0


def _template_publish(args: argparse.Namespace) -> int:
    from storeloop.messaging.selectors import version_of

    return _published(args, version_of(_template(args), args.version))


def _template_rollback(args: argparse.Namespace) -> int:
    from storeloop.messaging.selectors import rollback_target

    return _published(args, rollback_target(_template(args), args.version))


def _template_preview(args: argparse.Namespace) -> int:
    from storeloop.core.errors import ValidationError
    from storeloop.messaging.schemas import PreviewIn, PreviewOut
    from storeloop.messaging.selectors import version_of
    from storeloop.messaging.templates import TemplateRepository

    template = _template(args)
    version = version_of(template, args.version)
    sample: dict[str, Any] = {}
    if args.sample is not None:
        try:
            sample = PreviewIn.model_validate(orjson.loads(_read(args.sample, "sample"))).sample()
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise ValidationError(f"the sample must be a JSON object with contact, order, store or custom: {exc}",
                                  code="invalid_sample") from None  # fmt: skip
    out = PreviewOut.of(version, TemplateRepository().preview(version, sample), template.channel)
    if args.json:
        print_json(out.model_dump())
        return 0
    for field in ("subject", "text", "html"):
        value = getattr(out, field)
        if value:
            console.rule(f"v{out.version} {field}")
            console.print(value, markup=False, highlight=False)
    if out.wa_parameters:
        console.print(f"WhatsApp parameters: {list(out.wa_parameters)}", markup=False, highlight=False)
    if out.sms is not None:
        console.print(f"SMS: {out.sms.segments} segment(s), {out.sms.encoding}, {out.sms.characters} characters")
    return 0


# --- suppressions --------------------------------------------------------------------------------


def _suppression_dict(row: Any) -> dict[str, Any]:
    return {"id": row.pk, "channel": row.channel, "address": row.address, "reason": row.reason,
            "detail": row.detail, "created_at": row.created_at}  # fmt: skip


def _suppression_list(args: argparse.Namespace) -> int:
    from storeloop.consent.selectors import suppression_list

    rows = [_suppression_dict(s) for s in suppression_list(store=_store(args.store), channel=args.channel,
                                                           reason=args.reason)]  # fmt: skip
    if args.json:
        print_json(rows)
    else:
        columns = ["channel", "address", "reason", "detail", "created_at"]
        print_table("Suppressions", columns, [[r[c] for c in columns] for r in rows])
    return 0


def _suppression_add(args: argparse.Namespace) -> int:
    from storeloop.consent.selectors import suppression_by_address
    from storeloop.consent.services import MessagingConsentManager

    store = _store(args.store)
    created = MessagingConsentManager().suppress(store.pk, args.channel, args.address, args.reason, args.detail)
    row = suppression_by_address(store=store, channel=args.channel, address=args.address)
    if args.json:
        print_json({**_suppression_dict(row), "created": created})
    elif created:
        console.print(f"Suppressed {row.address} on {row.channel}.")
    else:
        console.print(f"{row.address} was already suppressed on {row.channel} ({row.reason}); unchanged.")
    return 0


def _suppression_remove(args: argparse.Namespace) -> int:
    from storeloop.consent.services import MessagingConsentManager

    store = _store(args.store)
    removal = MessagingConsentManager().unsuppress(store.pk, args.channel, args.address, args.reason, "cli")
    console.print(f"Removed the address from the {removal.channel} suppression list (it was suppressed for "
                  f"{removal.reason}); the removal is recorded as #{removal.pk}.")  # fmt: skip
    return 0
