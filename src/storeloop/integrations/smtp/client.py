"""SMTP submission: ``SmtpSender`` sends ``EmailMessageSpec`` over one reused connection.

Pure Python (stdlib ``smtplib``), no Django. One connection per sender, opened lazily, kept open
between messages and calls (``close()`` or the context manager ends it). A sender is safe to share
between threads (a lock serialises use) but sends one message at a time; use one per worker.

Transactions are driven command by command (MAIL, RCPT, DATA, content, final reply) instead of
``smtplib.sendmail`` so we know *where* a failure happened:

- before the message content was completely written (stale pooled connection, 421 "closing",
  reset while writing), the server cannot have accepted it: the sender reconnects and tries once
  more, transparently;
- after the content and its terminating dot were written but before the final reply arrived
  (timeout, reset), the server may have queued it: ``SmtpTransientError(maybe_delivered=True)``,
  never retried here.

Batches (``send_many``) on a server that offers PIPELINING (RFC 2920) write each message's content
together with the next message's MAIL, RCPT and DATA — RFC 2920 allows content as the first
"command" of a group — so a message costs one round trip instead of two. The next envelope is only
written once this message's own envelope was accepted, and nothing of the next message's content
goes out before its own turn (and its rate-limit slot). Whatever happens to this message, the next
one's envelope cannot have carried a message: a lost connection makes it go again on a new one, a
refused message ends its transaction with the final reply, and no RSET is sent while a DATA is open.

"Never twice" over SMTP. SMTP has no idempotency key and servers do not deduplicate, so the
guarantee is narrower than with an HTTP API:

- *Guaranteed*: this module never re-sends a message on its own after the server may have taken
  it; every send of one ``message_id_local`` carries the identical ``Message-ID`` (derived from our
  id, not random), so duplicates are recognisable downstream (receiving MTAs and mailbox providers
  such as Gmail collapse identical Message-IDs in many cases; our bounce/complaint handling keys on it).
- *Not guaranteed*: the window between the server writing the message to its queue and its 250
  reasserting it to us. A crash of our worker, or a lost connection, in that window leaves the
  outcome unknown; the task engine retries the transient error and the recipient may get a second
  copy (same Message-ID). The caller decides: ``maybe_delivered`` tells it this happened, e.g. to
  give up on marketing mail instead of retrying, and to record the attempt *before* sending so a
  crash is detectable. The window is one server round trip (milliseconds) per message.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import smtplib
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from storeloop.core.ports import RateLimiter

from .errors import (
    SmtpAuthError,
    SmtpConfigError,
    SmtpError,
    SmtpInvalidMessage,
    SmtpTransientError,
    Stage,
    error_from_reply,
    is_throttle,
    scrub,
)
from .message import EmailMessageSpec, envelope_sender, message_id_for, normalize_address, render

__all__ = ["SecurityMode", "SendResult", "SmtpConfig", "SmtpSender"]

logger = logging.getLogger("storeloop.integrations.smtp")

SecurityMode = Literal["starttls", "tls", "none"]
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
# The replies that let a transaction go on, per stage.
_STAGES: tuple[Stage, ...] = ("mail", "rcpt", "data")
_EXPECTED: dict[str, tuple[int, ...]] = {"mail": (250,), "rcpt": (250, 251), "data": (354,)}
# After these failures there is no point trying the rest of a batch on this sender.
_CONNECTION_STAGES = frozenset({"connect", "ehlo", "starttls", "auth"})


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpConfig:
    """How to reach the relay.

    ``security``: ``"starttls"`` (port 587; upgrade required, never falls back to plain text),
    ``"tls"`` (implicit TLS, port 465) or ``"none"`` (loopback relays only when credentials are
    set: a password is never sent in clear over a network). ``ssl_context`` defaults to the system
    trust store with host name checking. ``message_id_domain`` defaults to the From domain.
    ``max_messages_per_connection`` makes the sender reconnect proactively (many relays cap it).
    ``throttle_backoff`` is what the limiter is told to wait after a throttling reply (421/454).
    """

    host: str
    port: int = 587
    security: SecurityMode = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    local_hostname: str | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    message_id_domain: str | None = None
    max_messages_per_connection: int | None = None
    throttle_backoff: float = 60.0

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls", "none"):
            raise ValueError("security must be 'starttls', 'tls' or 'none'")
        if not self.host or not 0 < self.port < 65536:
            raise ValueError("host and a port in 1..65535 are required")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.max_messages_per_connection is not None and self.max_messages_per_connection < 1:
            raise ValueError("max_messages_per_connection must be at least 1")
        if self.security == "none" and self.username and not _is_loopback(self.host):
            raise ValueError("refusing to send SMTP credentials without TLS to a non-loopback host")


@dataclass(frozen=True)
class SendResult:
    """The server took the message: ``message_id`` (``<id@domain>``), ``response`` its final reply
    (scrubbed; usually carries the relay's queue id, worth storing for support requests)."""

    message_id: str
    accepted: bool
    response: str


@dataclass(frozen=True, slots=True)
class _Wire:
    """A message ready for the wire: envelope addresses, Message-ID and the dot-stuffed content."""

    sender: str
    recipient: str
    message_id: str
    payload: bytes


class _Reconnect(Exception):
    """Internal: the attempt failed before the server could have accepted the message."""

    def __init__(self, error: SmtpError) -> None:
        super().__init__(str(error))
        self.error = error


class SmtpSender:
    """Sends messages through one relay, reusing one connection (see the module docstring)."""

    def __init__(self, config: SmtpConfig, *, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self._limiter = limiter
        self._conn: smtplib.SMTP | None = None
        self._sent_on_conn = 0
        # The envelope written ahead on the connection (pipelined with the previous content) whose
        # three replies are still to be read: only ever the next message of the same send_many.
        self._ahead: _Wire | None = None
        self._lock = threading.RLock()
        self.connections_opened = 0  # how many connections this sender has opened (tests, metrics)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> SmtpSender:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """QUIT politely and close; the next send opens a new connection."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._ahead = None
            if conn is None:
                return
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the connection is going away either way
            finally:
                conn.close()

    def _discard(self) -> None:
        self._ahead = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def test_connection(self) -> None:
        """Connect, EHLO, STARTTLS/TLS, AUTH, NOOP and RSET on a fresh connection; raises ``SmtpError``.

        The connection stays open for the next send.
        """
        with self._lock:
            self.close()
            conn = self._connection()
            try:
                for command in ("noop", "rset"):
                    code, text = conn.docmd(command)
                    if code != 250:
                        raise error_from_reply(code, text, stage="noop")
            except smtplib.SMTPServerDisconnected as exc:
                self._discard()
                raise SmtpTransientError(f"connection lost: {exc}", stage="noop") from exc
            except SmtpError:
                self._discard()
                raise

    # -- sending -----------------------------------------------------------------------------

    def send(self, spec: EmailMessageSpec) -> SendResult:
        """Send one message; raises ``SmtpTransientError`` / ``SmtpTerminalError`` subclasses."""
        wire = self._wire(spec)
        outcome = wire if isinstance(wire, SmtpError) else self._deliver(wire, None)
        if isinstance(outcome, SmtpError):
            raise outcome
        return outcome

    def send_many(self, specs: Iterable[EmailMessageSpec]) -> list[SendResult | SmtpError]:
        """Send each message on the shared connection; one result per spec, in order.

        A refused recipient fails only its own message. A failure to connect, negotiate TLS or
        authenticate stops the batch: the remaining specs get a copy of that error (not attempted).
        """
        specs = list(specs)
        wires = [self._wire(spec) for spec in specs]
        results: list[SendResult | SmtpError] = []
        fatal: SmtpError | None = None
        with self._lock:  # the whole batch: an envelope written ahead belongs to its next message
            try:
                for index, (spec, wire) in enumerate(zip(specs, wires, strict=True)):
                    if fatal is not None:
                        results.append(self._not_attempted(fatal, spec))
                        continue
                    following = wires[index + 1] if index + 1 < len(wires) else None
                    following = following if isinstance(following, _Wire) else None
                    outcome = wire if isinstance(wire, SmtpError) else self._deliver(wire, following)
                    results.append(outcome)
                    if isinstance(outcome, SmtpAuthError | SmtpConfigError) or (
                        isinstance(outcome, SmtpError) and outcome.stage in _CONNECTION_STAGES
                    ):
                        fatal = outcome
            finally:
                if self._ahead is not None:  # replies no one will read: the connection is out of step
                    self._discard()
        return results

    def _not_attempted(self, error: SmtpError, spec: EmailMessageSpec) -> SmtpError:
        """A copy of the error that stopped the batch, for a message that was never tried."""
        message = f"not attempted: {error.message}"
        copy: SmtpError
        if isinstance(error, SmtpTransientError):
            copy = SmtpTransientError(
                message, code=error.code, enhanced_status=error.enhanced_status, stage=error.stage
            )
            copy.retry_after = error.retry_after
        else:
            copy = type(error)(message, code=error.code, enhanced_status=error.enhanced_status, stage=error.stage)
        try:
            copy.message_id = message_id_for(spec.message_id_local, self._domain_for(spec))
        except ValueError:
            copy.message_id = None
        return copy

    def _domain_for(self, spec: EmailMessageSpec) -> str:
        if self.config.message_id_domain:
            return self.config.message_id_domain
        return _from_domain(spec.from_addr)

    def _wire(self, spec: EmailMessageSpec) -> _Wire | SmtpError:
        try:
            wire = render(spec, self._domain_for(spec))
            sender = envelope_sender(spec)
        except ValueError as exc:
            return SmtpInvalidMessage(str(exc), stage="message")
        message_id = message_id_for(spec.message_id_local, self._domain_for(spec))
        return _Wire(sender, spec.to_normalized, message_id, _dot_stuff(wire))

    def _deliver(self, wire: _Wire, following: _Wire | None) -> SendResult | SmtpError:
        """Send ``wire`` (retrying once on a new connection when it cannot have been taken);
        ``following`` is the batch's next message, whose envelope may ride along (module doc)."""
        message_id = wire.message_id
        with self._lock:
            error: SmtpError
            for attempt in (1, 2):
                if self._limiter is not None:
                    self._limiter.acquire()
                try:
                    conn = self._connection()
                    code, text = self._transaction(conn, wire, following)
                except _Reconnect as retry:
                    self._discard()
                    error = retry.error
                    self._note_throttle(error)
                    if attempt == 1:
                        logger.info("smtp: reconnecting after %s message_id=%s", error, message_id)
                        continue
                except SmtpError as exc:
                    error = exc
                    self._note_throttle(error)
                else:
                    self._sent_on_conn += 1
                    response = scrub(f"{code} {text}")
                    logger.debug("smtp: accepted message_id=%s response=%s", message_id, response)
                    return SendResult(message_id=message_id, accepted=True, response=response)
                break
        error.message_id = message_id
        logger.info("smtp: not sent message_id=%s: %s", message_id, error)
        return error

    def _note_throttle(self, error: SmtpError) -> None:
        if isinstance(error, SmtpTransientError) and error.code is not None and is_throttle(error.code, error.message):
            error.retry_after = self.config.throttle_backoff
            if self._limiter is not None:
                self._limiter.penalize(self.config.throttle_backoff)

    def _transaction(self, conn: smtplib.SMTP, wire: _Wire, following: _Wire | None) -> tuple[int, str]:
        """MAIL, RCPT, DATA, content, final reply. Raises ``_Reconnect`` or ``SmtpError``.

        With PIPELINING (RFC 2920; Postfix, SES, SendGrid and Mailgun offer it) MAIL, RCPT and DATA
        go out in one write and their three replies are read after it, and in a batch that write is
        the previous message's content (module doc). The addresses are normalised ASCII
        addr-specs, so the commands are written as they are (``smtplib.mail``/``rcpt`` would parse
        each address again).
        """
        stage: Stage = "mail"
        content_sent = False
        pipelined = conn.has_extn("pipelining")
        written_ahead, self._ahead = self._ahead is wire, None
        try:
            if pipelined:
                if not written_ahead:
                    conn.send(_envelope(conn, wire))
                replies = []
                for _ in _STAGES:
                    replies.append(conn.getreply())
                    if replies[-1][0] == 421:  # closing: the next replies will never come
                        break
            else:  # one command at a time, stopping at the first refusal
                size = f" SIZE={len(wire.payload)}" if conn.has_extn("size") else ""
                replies = [conn.docmd("MAIL", f"FROM:<{wire.sender}>{size}")]
                if replies[-1][0] in _EXPECTED["mail"]:
                    replies.append(conn.docmd("RCPT", f"TO:<{wire.recipient}>"))
                    if replies[-1][0] in _EXPECTED["rcpt"]:
                        replies.append(conn.docmd("DATA"))
            refused = [(st, c, r) for st, (c, r) in zip(_STAGES, replies, strict=False) if c not in _EXPECTED[st]]
            if not refused:
                stage = "data"
                ahead = following if pipelined and following is not None and self._may_send_another() else None
                conn.send(wire.payload + _envelope(conn, ahead) if ahead is not None else wire.payload)
                content_sent = True
                self._ahead = ahead
                code, reply = conn.getreply()
            else:
                stage, code, reply = refused[0]
                if pipelined and len(replies) == 3 and replies[2][0] == 354:
                    # DATA accepted although MAIL or RCPT was refused (RFC 2920 says a server must
                    # not; some do): an empty message ends it, the refusal is the outcome.
                    conn.send(b".\r\n")
                    conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._discard()  # whatever state the connection is in, it cannot carry another message
            if content_sent:
                raise SmtpTransientError(
                    f"connection lost awaiting the final reply, the server may have queued the message: {exc}",
                    stage="data",
                    maybe_delivered=True,
                ) from exc
            # The terminating dot was not (completely) written, so nothing can have been accepted.
            raise _Reconnect(SmtpTransientError(f"connection lost: {exc}", stage=stage)) from exc
        if content_sent and code == 250:
            return code, reply.decode("utf-8", "replace")
        # A refusal, or a 250 where 354 was due (protocol violation, mapped to transient).
        error = error_from_reply(code, reply, stage=stage)
        if code == 421:
            # "Service closing": the server refused this transaction and is hanging up.
            raise _Reconnect(error)
        if self._ahead is None:
            self._reset(conn)
        # else: refused at its final reply, the transaction is over, and the next one's DATA may be
        # open (an RSET now would be read as its content): the next message reads its replies.
        raise error

    def _may_send_another(self) -> bool:
        """Whether the connection may carry the message after the one being sent."""
        limit = self.config.max_messages_per_connection
        return limit is None or self._sent_on_conn + 2 <= limit

    def _reset(self, conn: smtplib.SMTP) -> None:
        """RSET after a refused transaction so the connection can carry the next one."""
        try:
            code, _ = conn.docmd("rset")
        except (smtplib.SMTPServerDisconnected, OSError):
            code = 0
        if code != 250:
            self._discard()

    # -- connecting --------------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        limit = self.config.max_messages_per_connection
        if self._conn is not None and limit is not None and self._sent_on_conn >= limit:
            self.close()
        if self._conn is None:
            self._conn = self._open()
            self._sent_on_conn = 0
            self.connections_opened += 1
        return self._conn

    def _open(self) -> smtplib.SMTP:
        cfg = self.config
        # Loading the system trust store costs ~100 ms: only when TLS is actually used.
        context = cfg.ssl_context or (ssl.create_default_context() if cfg.security != "none" else None)
        stage: Stage = "connect"
        conn: smtplib.SMTP | None = None
        try:
            if cfg.security == "tls":
                conn = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, local_hostname=cfg.local_hostname, timeout=cfg.timeout, context=context
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, local_hostname=cfg.local_hostname, timeout=cfg.timeout)
            stage = "ehlo"
            _expect(conn.ehlo(), 250, "ehlo")
            if cfg.security == "starttls":
                stage = "starttls"
                if not conn.has_extn("starttls"):
                    raise SmtpConfigError("the server does not offer STARTTLS; refusing to send in clear", stage=stage)
                _expect(conn.starttls(context=context), 220, "starttls")
                stage = "ehlo"
                _expect(conn.ehlo(), 250, "ehlo")
            if cfg.username:
                stage = "auth"
                if not conn.has_extn("auth"):
                    raise SmtpAuthError("the server offers no AUTH (credentials are configured)", stage=stage)
                conn.login(cfg.username, cfg.password or "")
        except SmtpError:
            if conn is not None:
                conn.close()
            raise
        except Exception as exc:
            if conn is not None:
                conn.close()
            raise _map_connect_error(exc, stage) from exc
        logger.debug("smtp: connected host=%s port=%s security=%s", cfg.host, cfg.port, cfg.security)
        return conn


@functools.lru_cache(maxsize=64)
def _from_domain(from_addr: str) -> str:
    """The Message-ID domain of a From address (a sender has one or two: worth keeping)."""
    return normalize_address(from_addr, field_name="from_addr").rpartition("@")[2]


def _expect(reply: tuple[int, bytes], code: int, stage: Stage) -> None:
    if reply[0] != code:
        raise error_from_reply(reply[0], reply[1], stage=stage)


def _map_connect_error(exc: Exception, stage: Stage) -> SmtpError:
    """Map what ``smtplib``/``ssl``/sockets raise while connecting onto the error tree."""
    if isinstance(exc, smtplib.SMTPResponseException):  # bad greeting, auth refused (535) …
        return error_from_reply(exc.smtp_code, exc.smtp_error, stage=stage)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SmtpConfigError(f"TLS certificate not trusted: {exc.verify_message}", stage=stage)
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return SmtpTransientError(f"TLS connection dropped: {exc}", stage=stage)
    if isinstance(exc, ssl.SSLError):
        return SmtpConfigError(f"TLS handshake failed (TLS vs STARTTLS port?): {exc}", stage=stage)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SmtpAuthError(f"not supported by the server: {exc}", stage=stage)
    if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
        return SmtpTransientError(f"cannot reach the SMTP server: {exc}", stage=stage)
    if stage == "auth":  # "No suitable authentication method found."
        return SmtpAuthError(str(exc), stage=stage)
    return SmtpTransientError(f"SMTP failure: {exc}", stage=stage)


def _envelope(conn: smtplib.SMTP, wire: _Wire) -> bytes:
    """MAIL, RCPT and DATA of ``wire`` as one pipelined write."""
    size = f" SIZE={len(wire.payload)}" if conn.has_extn("size") else ""
    return f"MAIL FROM:<{wire.sender}>{size}\r\nRCPT TO:<{wire.recipient}>\r\nDATA\r\n".encode("ascii")


def _dot_stuff(payload: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency plus the terminating ``.``: lines starting with '.' get one more."""
    if payload.startswith(b".") or b"\n." in payload:  # rare; the regex scans every position
        payload = _LEADING_DOT.sub(b"..", payload)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return payload + b".\r\n"
