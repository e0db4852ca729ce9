"""``channel_for(store, channel)``: the dispatcher's channel factory, backed by ``MessagingConnection``.

Caching, and why:

- The channel (adapter + provider client) is cached per connection **in this process**, so an
  SMTP session, and the HTTP keep-alive pools of Twilio and WhatsApp, survive from one batch to the
  next. The cache is keyed by the connection's id and a fingerprint of its credentials, settings
  and rate: reconnecting (new credentials) builds a new client on the next batch, with no restart.
  A replaced client is closed only after ``RETIRE_AFTER``, since a batch in another thread may
  still be using it; a batch older than that was already reaped by the dispatcher anyway.
- Each connection gets one ``PacedRateLimiter`` of ``messages_per_second`` (``core.ratelimit``),
  handed to the client, which calls ``acquire`` before every request and ``penalize`` on a
  provider rate limit. Its schedule lives in the database under the store and channel, so every
  thread of every worker process shares the one rate the shop configured: two workers together
  send no faster than one. A process reserves send times a few at a time (50 ms worth), so the
  database sees a short transaction per reservation, not per message.
- A connection whose settings name an ``account_messages_per_second`` also paces by a schedule
  of its provider account (``account_key``: the SMTP relay and login, the Twilio account, the
  WhatsApp number), shared by every store connected to that account: an agency's stores on one
  relay account or one Twilio account together stay within the account's rate.
- The database is read on every call (one indexed query per store, channel and batch), so
  deactivating a connection stops sending from the next batch on.

The cache and limiters are guarded by one lock; building a client happens under it (rare: once
per connection and process, or after a reconnect), closing one never does.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
from django import db

from storeloop.core.errors import NotFound, ValidationError
from storeloop.core.ports import RateLimiter
from storeloop.core.ratelimit import AllOf, PacedRateLimiter
from storeloop.messaging.channels.base import ChannelInterface
from storeloop.messaging.channels.email import EmailChannel
from storeloop.messaging.channels.sms import SmsChannel
from storeloop.messaging.channels.whatsapp import WhatsAppChannel
from storeloop.messaging.inbound.links import twilio_status_url
from storeloop.messaging.models import MessagingConnection
from storeloop.stores.models import Store

Provider = MessagingConnection.Provider

# Defaults when a connection does not say: SMTP relays commonly allow ~10-14/s (SES starts at 14);
# Twilio queues beyond a sender's own throughput, 10/s keeps the REST calls polite; the Cloud API
# allows 80 messages/s per number by default, 50 leaves headroom for other senders on the number.
DEFAULT_RATES: dict[str, float] = {Provider.SMTP: 10.0, Provider.TWILIO: 10.0, Provider.WHATSAPP_CLOUD: 50.0}
# Twice the dispatcher's claim: a batch still running on a replaced client by then was reaped.
RETIRE_AFTER = 600.0
# HTTP providers: short in-client retries only; the dispatcher's back-off handles longer waits and
# a worker thread is never blocked for long.
HTTP_TIMEOUT = httpx.Timeout(15, connect=5)
# SMTP sessions per connection and process: each carries one message at a time; relays cap
# concurrent sessions per client (Microsoft 365 allows 3).
DEFAULT_SMTP_CONNECTIONS = 2
HTTP_RETRIES = 2
HTTP_BACKOFF_MAX = 5.0


class ChannelNotConfigured(NotFound):
    code = "channel_not_configured"


class ClosableChannel(ChannelInterface, Protocol):
    def close(self) -> None: ...


@dataclass
class _Entry:
    fingerprint: str
    channel: ClosableChannel


_lock = threading.Lock()
_channels: dict[int, _Entry] = {}
_limiters: dict[int, tuple[tuple[float, str, float], RateLimiter]] = {}
_retired: list[tuple[float, ClosableChannel]] = []


def channel_for(store: Store, channel_name: str) -> ChannelInterface:
    """The active channel of ``store`` for ``channel_name`` ("email", "sms", "whatsapp")."""
    connection = _active_connection(store, channel_name)
    if connection is None:
        raise ChannelNotConfigured(
            f"store #{store.pk} has no active {channel_name} connection; connect a provider first",
            details=[{"store_id": store.pk, "channel": channel_name}],
        )
    return channel_for_connection(connection)


def _active_connection(store: Store, channel_name: str) -> MessagingConnection | None:
    """Read the connection, leaving this thread's database connection as it was found.

    The dispatcher calls the factory from short-lived pool threads that touch the database for
    nothing else; a connection this read opened there would stay open until garbage collection
    (on PostgreSQL: one idle session per thread and batch).
    """
    opened_here = db.connection.connection is None
    try:
        return MessagingConnection.objects.filter(store=store, channel=channel_name, active=True).first()
    finally:
        if opened_here and not db.connection.in_atomic_block:
            db.connection.close()


def channel_for_connection(connection: MessagingConnection) -> ClosableChannel:
    """The cached channel of ``connection``, rebuilt when its credentials or settings changed."""
    fingerprint = _fingerprint(connection)
    with _lock:
        expired = _take_expired(time.monotonic())
        entry = _channels.get(connection.pk)
        if entry is not None and entry.fingerprint == fingerprint:
            channel = entry.channel
        else:
            channel = build_channel(connection, limiter=_limiter(connection))
            if entry is not None:
                _retired.append((time.monotonic(), entry.channel))
            _channels[connection.pk] = _Entry(fingerprint, channel)
    for old in expired:  # outside the lock: an SMTP QUIT may wait for the sender's own lock
        old.close()
    return channel


def close_channels() -> None:
    """Close every cached client (worker shutdown, tests); the next call builds new ones."""
    with _lock:
        channels = [e.channel for e in _channels.values()] + [c for _, c in _retired]
        _channels.clear()
        _retired.clear()
        _limiters.clear()
    for channel in channels:
        channel.close()


def rate_limiter(store_id: int, channel_name: str, messages_per_second: float) -> PacedRateLimiter:
    """The store's shared send rate on one channel, ``messages_per_second`` across all processes."""
    if not messages_per_second > 0:
        raise ValueError("messages_per_second must be positive")
    return PacedRateLimiter(f"messaging:{store_id}:{channel_name}", messages_per_second)


def build_channel(connection: MessagingConnection, *, limiter: RateLimiter | None = None) -> ClosableChannel:
    """A new, uncached channel for ``connection`` (``check_channel`` tests with one of these).

    Settings that cannot make a client (a row edited by hand, a missing key) raise
    ``ValidationError`` with code ``channel_misconfigured``, naming the connection, not a bare KeyError.
    """
    try:
        credentials = credentials_of(connection)
        options: dict[str, Any] = dict(connection.settings or {})
        if connection.provider == Provider.SMTP:
            return _email(credentials, options, limiter)
        if connection.provider == Provider.TWILIO:
            # Status callbacks come to our own webhook unless the shop routes them elsewhere.
            options["status_callback"] = options.get("status_callback") or twilio_status_url(connection.store_id)
            return _sms(credentials, options, limiter)
        if connection.provider == Provider.WHATSAPP_CLOUD:
            return _whatsapp(credentials, options, limiter)
        raise ValueError(f"unknown messaging provider {connection.provider!r}")
    except (KeyError, TypeError, ValueError, ssl.SSLError) as exc:
        problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValidationError(
            f"messaging connection #{connection.pk} ({connection.provider}) is misconfigured: {problem}",
            code="channel_misconfigured",
        ) from None


def credentials_of(connection: MessagingConnection) -> dict[str, str]:
    data = orjson.loads(connection.credentials or "{}")
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# --- builders --------------------------------------------------------------------------------------


def _email(credentials: dict[str, str], options: dict[str, Any], limiter: RateLimiter | None) -> EmailChannel:
    from storeloop.integrations.smtp.client import SmtpConfig, SmtpSender

    ca_cert = str(options.get("ca_cert") or "")
    config = SmtpConfig(
        host=str(options["host"]),
        port=int(options.get("port") or 587),
        security=options.get("security") or "starttls",
        username=credentials.get("username") or None,
        password=credentials.get("password") or None,
        timeout=float(options.get("timeout") or 30.0),
        ssl_context=ssl.create_default_context(cadata=ca_cert) if ca_cert else None,
        message_id_domain=str(options.get("message_id_domain") or "") or None,
        max_messages_per_connection=int(options["max_messages_per_connection"])
        if options.get("max_messages_per_connection")
        else None,
    )
    sessions = int(options.get("connections") or DEFAULT_SMTP_CONNECTIONS)
    return EmailChannel(
        [SmtpSender(config, limiter=limiter) for _ in range(sessions)],
        from_addr=str(options["from_addr"]),
        from_name=str(options.get("from_name") or ""),
        reply_to=str(options.get("reply_to") or ""),
        return_path=str(options.get("return_path") or ""),
        unsubscribe_mailto=str(options.get("unsubscribe_mailto") or ""),
    )


def _http_options(options: dict[str, Any]) -> dict[str, Any]:
    timeout = options.get("timeout")
    return {
        "timeout": httpx.Timeout(float(timeout), connect=min(5.0, float(timeout))) if timeout else HTTP_TIMEOUT,
        "max_retries": int(options.get("max_retries", HTTP_RETRIES)),
        "backoff_max": HTTP_BACKOFF_MAX,
    }


def _sms(credentials: dict[str, str], options: dict[str, Any], limiter: RateLimiter | None) -> SmsChannel:
    from storeloop.integrations.twilio.client import DEFAULT_BASE_URL, TwilioClient

    client = TwilioClient(
        credentials["account_sid"],
        credentials["auth_token"],
        base_url=str(options.get("base_url") or DEFAULT_BASE_URL),
        messaging_service_sid=str(options.get("messaging_service_sid") or "") or None,
        from_number=str(options.get("from_number") or "") or None,
        status_callback=str(options.get("status_callback") or "") or None,
        limiter=limiter,
        **_http_options(options),
    )
    return SmsChannel(client)


def _whatsapp(credentials: dict[str, str], options: dict[str, Any], limiter: RateLimiter | None) -> WhatsAppChannel:
    from storeloop.integrations.whatsapp.client import DEFAULT_API_VERSION, DEFAULT_BASE_URL, WhatsAppClient

    client = WhatsAppClient(
        credentials["access_token"],
        str(options["phone_number_id"]),
        base_url=str(options.get("base_url") or DEFAULT_BASE_URL),
        api_version=str(options.get("api_version") or DEFAULT_API_VERSION),
        limiter=limiter,
        max_retry_wait=HTTP_BACKOFF_MAX,
        **_http_options(options),
    )
    return WhatsAppChannel(client)


# --- cache internals (call with _lock held) -------------------------------------------------------


def _fingerprint(connection: MessagingConnection) -> str:
    material = orjson.dumps(
        [connection.provider, connection.credentials, connection.settings, connection.messages_per_second],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(material).hexdigest()


def send_rate(connection: MessagingConnection) -> float:
    """The connection's messages per second across all processes (the provider default if unset)."""
    return connection.messages_per_second or DEFAULT_RATES.get(connection.provider, 10.0)


def account_rate(connection: MessagingConnection) -> float | None:
    """The provider account's messages per second shared with other stores (None: no account limit)."""
    value = (connection.settings or {}).get("account_messages_per_second")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def account_key(connection: MessagingConnection) -> str:
    """The rate-limit key of the provider account behind ``connection``: the same for every store
    connected to one relay login, Twilio account or WhatsApp number (hashed: no SID or login in
    the key)."""
    settings, credentials = connection.settings or {}, credentials_of(connection)
    if connection.provider == Provider.SMTP:
        identity = [str(settings.get("host", "")).lower(), settings.get("port"), credentials.get("username", "")]
    elif connection.provider == Provider.TWILIO:
        identity = [credentials.get("account_sid", "")]
    else:
        identity = [settings.get("phone_number_id", "")]
    digest = hashlib.sha256(orjson.dumps([connection.provider, *identity])).hexdigest()[:32]
    return f"messaging-account:{connection.provider}:{digest}"


def _limiter(connection: MessagingConnection) -> RateLimiter:
    rate, shared = send_rate(connection), account_rate(connection)
    key = (rate, account_key(connection) if shared else "", shared or 0.0)
    cached = _limiters.get(connection.pk)
    if cached is None or cached[0] != key:
        own = rate_limiter(connection.store_id, connection.channel, rate)
        limiter: RateLimiter = AllOf(PacedRateLimiter(key[1], shared), own) if shared else own
        cached = (key, limiter)
        _limiters[connection.pk] = cached
    return cached[1]


def _take_expired(now: float) -> list[ClosableChannel]:
    expired = [c for retired_at, c in _retired if now - retired_at >= RETIRE_AFTER]
    _retired[:] = [(t, c) for t, c in _retired if now - t < RETIRE_AFTER]
    return expired
