"""``FakeSmtpServer``: a real SMTP server on loopback (aiosmtpd, threaded) that keeps what it receives.

    with FakeSmtpServer(require_auth=True, starttls=True) as fake:
        config = SmtpConfig("127.0.0.1", fake.port, "starttls", "user", "pass",
                            ssl_context=fake.client_ssl_context())
        ...
        assert fake.count_by_message_id()["<msg_1@shop.example>"] == 1

Faults are plain attributes, changed at any time from the test thread (reads and decrements happen
under a lock in the server thread):

- ``reject_recipients``: address -> (code, text), e.g. ``(550, "5.1.1 user unknown")`` at RCPT;
- ``fail_next``: the next N transactions get ``fail_reply`` (451 by default) at ``fail_stage``
  (``"mail"``, ``"rcpt"`` or ``"data"`` = after the content, the most ambiguous place);
- ``disconnect_next``: the next N DATA commands lose the connection. By default the server drops it
  mid-DATA (message not kept); with ``disconnect_after_accept`` it keeps the message and drops
  the connection before its 250 goes out: the "maybe delivered" window, made visible;
- ``latency_ms``: delay before answering MAIL, RCPT and the end of DATA;
- ``max_messages_per_connection``: MAIL beyond it gets ``421 4.7.0`` and the connection is closed;
- ``bounce_recipients``: address -> (status, diagnostic): accepted, then a DSN lands in ``dsns``.

EHLO advertises ``PIPELINING`` (RFC 2920) as Postfix, SES and SendGrid do; ``pipelining=False`` turns it
off. aiosmtpd reads commands in order from its stream buffer, so pipelined commands need nothing more;
accepted sockets get ``TCP_NODELAY`` so that several replies to one pipelined write are not held back by
Nagle's algorithm (asyncio only sets it for sockets created with ``proto=IPPROTO_TCP``, and
``socket.create_server`` leaves ``proto`` at 0).

Cost per message matters (benchmarks run the fake on the cores of the system under test): MAIL and
RCPT addresses in their plain forms are parsed by ``plain_address`` instead of aiosmtpd's
``email._header_value_parser`` path, with the same result; every other form still goes to aiosmtpd.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .dsn import make_dsn
from .tls import client_context, self_signed_cert, server_context

FailStage = Literal["mail", "rcpt", "data"]
_HOSTNAME = "fake-smtp.storeloop.test"

# ASCII dot-atoms only: anything with quotes, comments, spaces, routes, literals, encoded words
# ("=?") or non-ASCII takes aiosmtpd's own parser. The tail after the address must be empty or spaces
# then an ESMTP keyword: the parser eats leading CFWS there, and after a bare domain a "." or "@"
# would continue (obs-domain) or fail it.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_PLAIN_ADDRESS = re.compile(rf"(<)?({_DOT_ATOM}@{_DOT_ATOM})(?(1)>)(?: +(?=[A-Za-z0-9])|\Z)")


def plain_address(arg: str, local_part_limit: int = 0) -> tuple[str | None, str | None] | None:
    """aiosmtpd's ``SMTP._getaddr(arg)`` for ``<local@domain>``, ``local@domain`` and ``<>`` (each
    optionally followed by ESMTP parameters); None for any other form (the caller asks aiosmtpd)."""
    if not arg:
        return "", ""
    if arg.startswith("<>"):
        return "<>", arg[2:]  # the parser returns early here: the rest keeps its leading space
    if "=?" in arg:
        return None
    match = _PLAIN_ADDRESS.match(arg)
    if match is None:
        return None
    address = match[2]
    if local_part_limit and address.index("@") > local_part_limit:
        return None, None
    return address, arg[match.end() :]


class _QuietDeprecation(logging.Filter):
    """aiosmtpd 1.4 warns "Session.login_data is deprecated" on every successful AUTH, from its own code."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_AIOSMTPD_LOG = logging.getLogger("mail.log")
_AIOSMTPD_LOG.addFilter(_QuietDeprecation())
if _AIOSMTPD_LOG.level == logging.NOTSET:
    # aiosmtpd logs every command (with addresses) at INFO: noise and CPU in tests and benchmarks.
    _AIOSMTPD_LOG.setLevel(logging.WARNING)


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message: envelope, parsed form (``policy.default``), raw bytes and session info."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    received_at: datetime
    session_id: int
    queue_id: str
    authenticated_as: str | None
    tls: bool

    @cached_property
    def message(self) -> EmailMessage:
        """Parsed on first use: parsing every message as it arrives made the fake slower than the
        senders it is meant to measure (benchmarks only count and compare envelopes)."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str | None:
        value = self.message["Message-ID"]
        return str(value).strip() if value is not None else None


class _Session(SMTP):
    """aiosmtpd's protocol object (one per connection) with the hooks faults need."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.fake = handler.fake
        self.session_id = 0
        self.delivered = 0  # messages accepted on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # called again after STARTTLS on the same connection
        super().connection_made(transport)
        if first:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.fake._opened(self, transport.get_extra_info("peername"))

    def connection_lost(self, error: Exception | None) -> None:
        self.fake._closed(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        self.fake.reads_by_session[self.session_id] += 1  # the server's thread only
        super().data_received(data)

    @property
    def secure(self) -> bool:
        return self._tls_protocol is not None or self.fake.tls

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        fast = plain_address(arg, self.local_part_limit)
        return fast if fast is not None else super()._getaddr(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        limit = self.fake.max_messages_per_connection
        if limit is not None and self.delivered >= limit and self.session is not None and self.session.host_name:
            await self.push("421 4.7.0 Too many messages on this connection, closing")
            assert self.transport is not None
            self.transport.close()
            return
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self.fake.data_commands += 1  # only this thread writes it
        envelope = self.envelope
        if envelope is not None and envelope.rcpt_tos and not arg and self.fake._take_disconnect(after_accept=False):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            # Wait for the first content line so the drop really happens mid-DATA.
            with contextlib.suppress(
                TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError
            ):
                await asyncio.wait_for(self._reader.readuntil(b"\r\n"), timeout=5)
            _abort(self.transport)
            return
        await super().smtp_DATA(arg)


def _abort(transport: asyncio.BaseTransport | None) -> None:
    """Drop the connection at once (RST, unsent replies discarded), like a crashed or cut-off server."""
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    elif transport is not None:
        transport.close()


class _Handler:
    def __init__(self, fake: FakeSmtpServer) -> None:
        self.fake = fake

    async def handle_EHLO(
        self, server: _Session, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # with this hook aiosmtpd leaves it to us
        if self.fake.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the closing "250 HELP"
        return responses

    async def handle_MAIL(
        self, server: _Session, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.fake.latency_ms > 0:
            await self.fake._delay()
        if self.fake.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        failure = self.fake._take_failure("mail")
        if failure:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: _Session, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.fake.latency_ms > 0:
            await self.fake._delay()
        rejection = self.fake._rejection(address)
        if rejection:
            return rejection
        failure = self.fake._take_failure("rcpt")
        if failure:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _Session, session: Session, envelope: Envelope) -> str:
        if self.fake.latency_ms > 0:
            await self.fake._delay()
        failure = self.fake._take_failure("data")
        if failure:
            return failure
        record = self.fake._store(server, session, envelope)
        server.delivered += 1
        if self.fake._take_disconnect(after_accept=True):
            # Kept, but the 250 never leaves: abort() discards the write below.
            _abort(server.transport)
        return f"250 2.0.0 OK: queued as {record.queue_id}"


class _Controller(Controller):
    """aiosmtpd's threaded controller, bound to a socket we created (so port 0 works) and with a
    start-up probe whose connection is not counted."""

    def __init__(self, fake: FakeSmtpServer, sock: socket.socket, **kwargs: Any) -> None:
        self._fake = fake
        self._sock = sock
        host, port = sock.getsockname()[:2]
        super().__init__(_Handler(fake), hostname=host, port=port, **kwargs)

    def factory(self) -> SMTP:
        return _Session(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def _trigger_server(self) -> None:
        # aiosmtpd builds the protocol lazily; it connects once to surface factory errors.
        with socket.socket(self._sock.family, socket.SOCK_STREAM) as probe:
            probe.bind((self.hostname, 0))
            self._fake._ignored_peers.add(probe.getsockname()[:2])
            probe.settimeout(2.0)
            probe.connect((self.hostname, self.port))
            if self.ssl_context is not None:
                with client_context(self._fake.cert_pem).wrap_socket(probe, server_hostname=self.hostname) as tls:
                    tls.recv(1024)
            else:
                probe.recv(1024)


class FakeSmtpServer:
    """See the module docstring. ``starttls`` offers (and requires) STARTTLS; ``tls`` is implicit TLS."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        require_auth: bool = False,
        username: str = "user",
        password: str = "pass",  # noqa: S107 - the fake's well-known test credential
        starttls: bool = False,
        tls: bool = False,
        pipelining: bool = True,
    ) -> None:
        if starttls and tls:
            raise ValueError("choose starttls (port 587 style) or tls (port 465 style), not both")
        self.host = host
        self._requested_port = port
        self.require_auth = require_auth
        self.username = username
        self.password = password
        self.starttls = starttls
        self.tls = tls
        self.pipelining = pipelining
        self.cert_pem = b""
        # faults (see the module docstring)
        self.reject_recipients: dict[str, tuple[int, str]] = {}
        self.bounce_recipients: dict[str, tuple[str, str]] = {}
        self.fail_next = 0
        # How many times each connection's bytes arrived (session id -> reads): the client's round
        # trips, as the tests of pipelining count them.
        self.reads_by_session: collections.Counter[int] = collections.Counter()
        self.fail_reply: tuple[int, str] = (451, "4.3.0 Temporary local problem, try again later")
        self.fail_stage: FailStage = "data"
        self.disconnect_next = 0
        self.disconnect_after_accept = False
        # DATA commands taken so far (all sessions): lets a test arm a fault only once the server has
        # read what a pipelining client sent ahead.
        self.data_commands = 0
        self.latency_ms = 0
        self.max_messages_per_connection: int | None = None
        # state
        self._lock = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._dsns: list[bytes] = []
        self._connections = 0
        self._open_sessions: set[_Session] = set()
        self._ignored_peers: set[tuple[Any, ...]] = set()
        self._controller: _Controller | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSmtpServer:
        if self._controller is not None:
            raise RuntimeError("already started")
        family = socket.getaddrinfo(self.host, None, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((self.host, self._requested_port), family=family)
        self.port = sock.getsockname()[1]
        kwargs: dict[str, Any] = {
            "server_hostname": _HOSTNAME,
            "authenticator": self._authenticate,
            "auth_require_tls": self.starttls,  # no AUTH before STARTTLS on a STARTTLS server
        }
        if self.starttls or self.tls:
            self.cert_pem, key_pem = self_signed_cert([self.host])
            context = server_context(self.cert_pem, key_pem)
            if self.starttls:
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs["ssl_context"] = context
        self._controller = _Controller(self, sock, **kwargs)
        try:
            self._controller.start()
        except BaseException:
            self._controller = None
            sock.close()
            raise
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> FakeSmtpServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context for clients that trusts this server's certificate (STARTTLS/TLS only)."""
        if not self.cert_pem:
            raise RuntimeError("the server has no certificate: start it with starttls=True or tls=True")
        return client_context(self.cert_pem)

    # -- what was received -------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def dsns(self) -> list[bytes]:
        """Bounces generated for ``bounce_recipients`` (raw DSN e-mails, addressed to MAIL FROM)."""
        with self._lock:
            return list(self._dsns)

    @property
    def connections(self) -> int:
        """Connections accepted since start (the start-up probe is not counted)."""
        with self._lock:
            return self._connections

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open_sessions)

    def message_ids(self) -> list[str | None]:
        return [m.message_id for m in self.messages]

    def count_by_message_id(self) -> collections.Counter[str | None]:
        """How often each Message-ID arrived: any value above 1 is a duplicate delivery."""
        return collections.Counter(self.message_ids())

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived (a condition, not a sleep); TimeoutError after."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._messages)} of {count} messages after {timeout}s")
                self._lock.wait(remaining)
            return list(self._messages)

    def clear(self) -> None:
        """Forget received messages, DSNs and the connection count (faults are kept)."""
        with self._lock:
            self._messages.clear()
            self._dsns.clear()
            self._connections = 0

    def make_dsn(self, received: ReceivedMessage, **kwargs: Any) -> bytes:
        """A DSN (bounce) for a received message, as its recipient's MTA would send back later."""
        return make_dsn(received.raw, received.rcpt_tos[0], envelope_from=received.mail_from, **kwargs)

    def drop_connections(self, timeout: float = 5.0) -> None:
        """Close every open client connection from the server side (like an idle timeout) and wait."""
        controller = self._controller
        if controller is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._drop_all(), controller.loop)
        future.result(timeout)

    async def _drop_all(self) -> None:
        with self._lock:
            sessions = list(self._open_sessions)
        for session in sessions:
            if session.transport is not None:
                session.transport.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while self.open_connections and loop.time() < deadline:
            await asyncio.sleep(0.005)  # lets the loop run connection_lost for each

    # -- called from the server thread -------------------------------------------------------

    def _opened(self, session: _Session, peer: Any) -> None:
        with self._lock:
            self._open_sessions.add(session)
            if isinstance(peer, tuple) and peer[:2] in self._ignored_peers:
                return
            self._connections += 1
            session.session_id = self._connections

    def _closed(self, session: _Session) -> None:
        with self._lock:
            self._open_sessions.discard(session)

    async def _delay(self) -> None:
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)

    def _rejection(self, address: str) -> str | None:
        rejected = self.reject_recipients
        if not rejected:
            return None
        reply = rejected.get(address) or rejected.get(address.lower())
        return f"{reply[0]} {reply[1]}" if reply else None

    def _take_failure(self, stage: FailStage) -> str | None:
        if self.fail_next <= 0:  # reading needs no lock; only taking one does (per message, this adds up)
            return None
        with self._lock:
            if self.fail_next <= 0 or self.fail_stage != stage:
                return None
            self.fail_next -= 1
            return f"{self.fail_reply[0]} {self.fail_reply[1]}"

    def _take_disconnect(self, *, after_accept: bool) -> bool:
        if self.disconnect_next <= 0:
            return False
        with self._lock:
            if self.disconnect_next <= 0 or self.disconnect_after_accept != after_accept:
                return False
            self.disconnect_next -= 1
            return True

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user_ok = hmac.compare_digest(auth_data.login, self.username.encode())
            password_ok = hmac.compare_digest(auth_data.password, self.password.encode())
            if user_ok and password_ok:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def _store(self, server: _Session, session: Session, envelope: Envelope) -> ReceivedMessage:
        raw = envelope.original_content or b""
        auth = session.auth_data
        with self._lock:
            record = ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                received_at=datetime.now(UTC),
                session_id=server.session_id,
                queue_id=f"FAKE{len(self._messages) + 1:06d}",
                authenticated_as=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                tls=server.secure,
            )
            self._messages.append(record)
            for rcpt in record.rcpt_tos:
                bounce = self.bounce_recipients.get(rcpt) or self.bounce_recipients.get(rcpt.lower())
                if bounce:
                    self._dsns.append(
                        make_dsn(raw, rcpt, envelope_from=record.mail_from, status=bounce[0], diagnostic=bounce[1])
                    )
            self._lock.notify_all()
        return record
