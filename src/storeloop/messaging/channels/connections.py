"""Connecting a store to an e-mail, SMS or WhatsApp provider, and checking a connection.

Input is checked here, with a machine-readable ``code`` per problem, so a wrong setting is refused
when it is entered instead of failing every message later. Secrets go to ``credentials`` (JSON,
encrypted at rest); everything else to ``settings``, which may be shown and logged. Connecting
again replaces the store's connection for that channel; the factory notices the change and builds
a new client on the next batch.
"""

from __future__ import annotations

import datetime as dt
import re
import ssl
from typing import Any
from urllib.parse import urlsplit

import orjson

from storeloop.core.errors import NotFound, TerminalError, TransientError, ValidationError
from storeloop.messaging.channels.factory import DEFAULT_RATES, DEFAULT_SMTP_CONNECTIONS, build_channel
from storeloop.messaging.models import MessagingConnection
from storeloop.stores.models import Store

Provider = MessagingConnection.Provider
MAX_RATE = 10_000.0  # a sanity bound; real limits come from the provider account
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,253}")
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_API_VERSION = re.compile(r"v\d+\.\d+")
_SECRET = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces: it travels in headers and URLs
MIN_WEBHOOK_SECRET = 16
MIN_VERIFY_TOKEN = 8
MAX_SMTP_CONNECTIONS = 10


def _invalid(message: str, code: str, field: str) -> ValidationError:
    return ValidationError(message, code=code, details=[{"field": field}])


def _store(store_id: int) -> Store:
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        raise NotFound(f"no store {store_id}", code="store_not_found")
    return store


def _url(value: str, field: str) -> str:
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid(f"{field} must be an http(s) URL", "invalid_url", field)
    return value.rstrip("/") if field == "base_url" else value


def _checked_rate(value: float, field: str) -> float:
    if not 0 < value <= MAX_RATE:
        raise _invalid(f"{field} must be above 0 and at most {MAX_RATE:g}", "invalid_rate", field)
    return float(value)


def _rate(value: float | None, provider: str) -> float:
    return DEFAULT_RATES[provider] if value is None else _checked_rate(value, "messages_per_second")


def _account_rate(value: float | None) -> float | None:
    """The provider account's rate, shared by every store connected to the account (None: none)."""
    return None if value is None else _checked_rate(value, "account_messages_per_second")


def _secret(value: str, field: str, minimum: int) -> str:
    """A webhook secret or token as given (empty when not given), or a ``ValidationError`` naming ``field``."""
    if not value:
        return ""
    if len(value) < minimum or not _SECRET.fullmatch(value):
        raise _invalid(f"{field} must be {minimum} to 200 printable characters without spaces", "invalid_secret",
                       field)  # fmt: skip
    return value


def _address(value: str, field: str, *, required: bool = False) -> str:
    from storeloop.integrations.smtp.message import normalize_address

    if not value.strip():
        if required:
            raise _invalid(f"{field} is required", "missing_address", field)
        return ""
    try:
        return normalize_address(value, field_name=field)
    except ValueError as exc:
        raise _invalid(str(exc), "invalid_address", field) from None


def connect_smtp(
    *,
    store_id: int,
    host: str,
    from_addr: str,
    port: int = 587,
    security: str = "starttls",
    username: str = "",
    password: str = "",
    from_name: str = "",
    reply_to: str = "",
    return_path: str = "",
    message_id_domain: str = "",
    unsubscribe_mailto: str = "",
    ca_cert: str = "",
    webhook_secret: str = "",
    messages_per_second: float | None = None,
    connections: int = DEFAULT_SMTP_CONNECTIONS,
    account_messages_per_second: float | None = None,
) -> MessagingConnection:
    """E-mail through an SMTP relay (587 STARTTLS, 465 implicit TLS, or plain on loopback only).

    ``connections``: SMTP sessions each worker process keeps open to the relay (1-10; each carries
    one message at a time). Relays cap concurrent sessions per client (Microsoft 365: 3), hence 2.

    ``webhook_secret`` signs the bounce and complaint events posted to ``/webhooks/email/<store>``
    (docs/messaging-webhooks.md); without one that endpoint refuses every request.

    ``messages_per_second`` is this store's rate; ``account_messages_per_second`` the relay
    account's, when several stores send through one login (together they stay within it).
    """
    from storeloop.integrations.smtp.client import SmtpConfig
    from storeloop.integrations.smtp.message import message_id_for

    host = host.strip()
    if not _HOST.fullmatch(host):
        raise _invalid("host must be a host name or IP address", "invalid_host", "host")
    if not 0 < port < 65536:
        raise _invalid("port must be between 1 and 65535", "invalid_port", "port")
    if security not in ("starttls", "tls", "none"):
        raise _invalid("security must be starttls, tls or none", "invalid_security", "security")
    if password and not username.strip():
        raise _invalid("a password needs a username", "missing_username", "username")
    try:
        SmtpConfig(host=host, port=port, security=security, username=username.strip() or None)  # type: ignore[arg-type]
    except ValueError as exc:  # e.g. credentials in clear to a non-loopback host
        raise _invalid(str(exc), "insecure_smtp", "security") from None
    if any(c in from_name for c in "\r\n\x00"):
        raise _invalid("from_name must be one line", "invalid_from_name", "from_name")
    if not 1 <= connections <= MAX_SMTP_CONNECTIONS:
        raise _invalid(f"connections must be between 1 and {MAX_SMTP_CONNECTIONS}", "invalid_connections",
                       "connections")  # fmt: skip
    settings: dict[str, Any] = {
        "host": host, "port": port, "security": security, "from_addr": _address(from_addr, "from_addr", required=True),
        "from_name": from_name.strip(), "reply_to": _address(reply_to, "reply_to"),
        "return_path": _address(return_path, "return_path"), "connections": connections,
    }  # fmt: skip
    if message_id_domain.strip():
        try:
            message_id_for("probe", message_id_domain)
        except ValueError as exc:
            raise _invalid(str(exc), "invalid_message_id_domain", "message_id_domain") from None
        settings["message_id_domain"] = message_id_domain.strip().lower()
    # An address that unsubscribes whoever writes to it (offered next to the https link).
    settings["unsubscribe_mailto"] = _address(unsubscribe_mailto.strip().removeprefix("mailto:"), "unsubscribe_mailto")
    if ca_cert.strip():
        try:
            ssl.create_default_context(cadata=ca_cert)
        except (ssl.SSLError, ValueError):
            raise _invalid("ca_cert must be PEM certificate(s)", "invalid_ca_cert", "ca_cert") from None
        settings["ca_cert"] = ca_cert
    credentials = {"username": username.strip(), "password": password} if username.strip() else {}
    secret = _secret(webhook_secret.strip(), "webhook_secret", MIN_WEBHOOK_SECRET)
    if secret:
        credentials["webhook_secret"] = secret
    return _save(_store(store_id), "email", Provider.SMTP, credentials, settings,
                 _rate(messages_per_second, Provider.SMTP), _account_rate(account_messages_per_second))  # fmt: skip


def connect_twilio(
    *,
    store_id: int,
    account_sid: str,
    auth_token: str,
    from_number: str = "",
    messaging_service_sid: str = "",
    status_callback: str = "",
    base_url: str = "",
    messages_per_second: float | None = None,
    account_messages_per_second: float | None = None,
) -> MessagingConnection:
    """SMS through Twilio, from a Messaging Service (preferred) or one sender number.

    Without a ``status_callback``, messages name this store's own status webhook
    (``{PUBLIC_URL}/webhooks/twilio/<store>/status``, see ``channels.factory``).
    ``account_messages_per_second``: the Twilio account's rate, shared by every store on it.
    """
    from storeloop.integrations.twilio.client import TwilioClient

    account_sid, auth_token = account_sid.strip(), auth_token.strip()
    if not _ACCOUNT_SID.fullmatch(account_sid):
        raise _invalid("account_sid is 'AC' followed by 32 hexadecimal characters", "invalid_account_sid",
                       "account_sid")  # fmt: skip
    if not auth_token:
        raise _invalid("a Twilio auth token is required", "missing_token", "auth_token")
    service, number = messaging_service_sid.strip(), from_number.strip()
    if service and not _SERVICE_SID.fullmatch(service):
        raise _invalid("messaging_service_sid is 'MG' followed by 32 hexadecimal characters",
                       "invalid_messaging_service_sid", "messaging_service_sid")  # fmt: skip
    if not service and not number:
        raise _invalid("a messaging_service_sid or a from_number is required", "missing_sender", "from_number")
    settings = {
        "base_url": _url(base_url.strip(), "base_url"),
        "from_number": number,
        "messaging_service_sid": service,
        "status_callback": _url(status_callback.strip(), "status_callback"),
    }
    try:  # the client's own checks (sender formats: E.164, short code, alphanumeric ID)
        TwilioClient(account_sid, auth_token, messaging_service_sid=service or None, from_number=number or None).close()
    except ValueError as exc:
        raise _invalid(str(exc), "invalid_from_number", "from_number") from None
    return _save(_store(store_id), "sms", Provider.TWILIO, {"account_sid": account_sid, "auth_token": auth_token},
                 settings, _rate(messages_per_second, Provider.TWILIO),
                 _account_rate(account_messages_per_second))  # fmt: skip


def connect_whatsapp(
    *,
    store_id: int,
    access_token: str,
    phone_number_id: str,
    base_url: str = "",
    api_version: str = "",
    app_secret: str = "",
    verify_token: str = "",
    messages_per_second: float | None = None,
    account_messages_per_second: float | None = None,
) -> MessagingConnection:
    """WhatsApp through the Cloud API for one business phone number (system-user token).

    Webhooks (``/webhooks/whatsapp/<store>``) need the Meta app's ``app_secret`` (it signs every
    notification) and the ``verify_token`` entered with the callback URL; without them the
    endpoint refuses the verification and every notification.
    ``account_messages_per_second``: the number's rate, shared by every store sending from it.
    """
    access_token, phone_number_id, api_version = access_token.strip(), phone_number_id.strip(), api_version.strip()
    if not access_token:
        raise _invalid("a WhatsApp access token is required", "missing_token", "access_token")
    if not phone_number_id.isdigit():
        raise _invalid("phone_number_id is the numeric id of the business phone number", "invalid_phone_number_id",
                       "phone_number_id")  # fmt: skip
    if api_version and not _API_VERSION.fullmatch(api_version):
        raise _invalid("api_version looks like v21.0", "invalid_api_version", "api_version")
    settings = {"base_url": _url(base_url.strip(), "base_url"), "api_version": api_version,
                "phone_number_id": phone_number_id}  # fmt: skip
    credentials = {"access_token": access_token}
    for field, value, minimum in (("app_secret", app_secret, MIN_WEBHOOK_SECRET),
                                  ("verify_token", verify_token, MIN_VERIFY_TOKEN)):  # fmt: skip
        secret = _secret(value.strip(), field, minimum)
        if secret:
            credentials[field] = secret
    return _save(_store(store_id), "whatsapp", Provider.WHATSAPP_CLOUD, credentials, settings,
                 _rate(messages_per_second, Provider.WHATSAPP_CLOUD),
                 _account_rate(account_messages_per_second))  # fmt: skip


def _save(
    store: Store,
    channel: str,
    provider: str,
    credentials: dict[str, str],
    settings: dict[str, Any],
    rate: float,
    account_rate: float | None,
) -> MessagingConnection:
    """Store the connection. ``account_rate`` (``account_messages_per_second``) paces every store
    connected to the same provider account together (``channels.factory.account_key``)."""
    settings = {**settings, "account_messages_per_second": account_rate}
    connection, _ = MessagingConnection.objects.update_or_create(
        store=store,
        channel=channel,
        defaults={
            "provider": provider,
            "credentials": orjson.dumps(credentials).decode(),
            "settings": {k: v for k, v in settings.items() if v not in ("", None)},
            "messages_per_second": rate,
            "active": True,
        },
    )
    return connection


MAX_CAP_HOURS = 24 * 90


def set_marketing_policy(
    store_id: int,
    channel: str,
    *,
    cap_hours: float | None = None,
    quiet_hours: tuple[dt.time, dt.time] | None = None,
) -> MessagingConnection:
    """Set the store's marketing rules on a connected channel: the least hours between two marketing
    messages to one contact (None: the default, 16 for e-mail, 24 for SMS and WhatsApp; 0: no cap)
    and the quiet hours in the recipient's local time (None: the default, 21:00-08:00 for SMS and
    WhatsApp, none for e-mail; the same start and end: none). Takes effect within a second."""
    connection = MessagingConnection.objects.filter(store_id=_store(store_id).pk, channel=channel).first()
    if connection is None:
        raise NotFound(f"store {store_id} has no {channel} connection", code="channel_not_configured")
    if cap_hours is not None and not 0 <= cap_hours <= MAX_CAP_HOURS:
        raise _invalid(f"cap_hours must be between 0 and {MAX_CAP_HOURS}", "invalid_cap", "cap_hours")
    connection.marketing_cap_hours = cap_hours
    connection.quiet_hours_start, connection.quiet_hours_end = quiet_hours or (None, None)
    connection.save(update_fields=["marketing_cap_hours", "quiet_hours_start", "quiet_hours_end", "updated_at"])
    return connection


def check_channel(connection: MessagingConnection) -> str:
    """Prove the stored credentials and settings against the provider; "ok" or ``ValidationError``.

    Uses a fresh client (not the factory's cached one), so it tests what is stored now.
    """
    label = connection.get_provider_display()
    channel = build_channel(connection)  # ValidationError "channel_misconfigured" if it cannot be built
    try:
        channel.test_connection()
    except TerminalError as exc:
        raise ValidationError(f"{label} refused: {exc}", code="channel_check_failed") from None
    except TransientError as exc:
        raise ValidationError(f"{label} unreachable: {exc}", code="channel_unreachable") from None
    finally:
        channel.close()
    return "ok"
