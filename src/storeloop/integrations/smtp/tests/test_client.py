"""SmtpSender against the fake relay: security modes, auth, reuse, error mapping, the resend window."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.smtp.client import SendResult, SmtpConfig, SmtpSender
from storeloop.integrations.smtp.errors import (
    SmtpAuthError,
    SmtpConfigError,
    SmtpError,
    SmtpMessageRejected,
    SmtpRecipientRejected,
    SmtpTransientError,
)
from storeloop.integrations.smtp.fake import FakeSmtpServer

from .conftest import RecordingLimiter, config_for, make_spec


def test_send_delivers_the_message_with_its_envelope(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    spec = make_spec(1, return_path="bounces+msg_0001@shop.example")
    result = sender.send(spec)
    assert result == SendResult(
        message_id="<msg_0001@shop.example>", accepted=True, response="250 2.0.0 OK: queued as FAKE000001"
    )
    [received] = fake.messages
    assert received.mail_from == "bounces+msg_0001@shop.example"
    assert received.rcpt_tos == ("customer1@example.com",)
    assert received.message_id == "<msg_0001@shop.example>"
    assert received.message.get_content_type() == "multipart/alternative"
    assert received.authenticated_as is None
    assert not received.tls


def test_dot_stuffing_keeps_lines_that_start_with_a_dot(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    sender.send(make_spec(text=".\n..two\n.three\n", html=None))
    body = fake.messages[0].message.get_content().replace("\r\n", "\n")
    assert body == ".\n..two\n.three\n"


def test_message_id_domain_can_be_configured(fake: FakeSmtpServer) -> None:
    with SmtpSender(config_for(fake, message_id_domain="mail.storeloop.example")) as sender:
        assert sender.send(make_spec()).message_id == "<msg_0001@mail.storeloop.example>"


def test_auth_over_plain_loopback() -> None:
    with FakeSmtpServer(require_auth=True) as fake:
        with SmtpSender(config_for(fake, username="user", password="pass")) as sender:
            sender.send(make_spec())
        assert fake.messages[0].authenticated_as == "user"


def test_starttls_with_auth_trusting_the_fake_certificate() -> None:
    with FakeSmtpServer(require_auth=True, starttls=True) as fake:
        with SmtpSender(config_for(fake, username="user", password="pass")) as sender:
            sender.send(make_spec())
        [received] = fake.messages
        assert received.tls
        assert received.authenticated_as == "user"


def test_implicit_tls() -> None:
    with FakeSmtpServer(tls=True) as fake:
        with SmtpSender(config_for(fake)) as sender:
            sender.send(make_spec())
        assert fake.messages[0].tls


def test_untrusted_certificate_is_a_config_error() -> None:
    with FakeSmtpServer(starttls=True) as fake:
        sender = SmtpSender(config_for(fake, ssl_context=None))  # the system trust store
        with sender, pytest.raises(SmtpConfigError, match="not trusted") as info:
            sender.send(make_spec())
        assert isinstance(info.value, TerminalError)
        assert fake.messages == []


def test_starttls_is_required_not_opportunistic(fake: FakeSmtpServer) -> None:
    sender = SmtpSender(config_for(fake, security="starttls"))
    with sender, pytest.raises(SmtpConfigError, match="STARTTLS"):
        sender.send(make_spec())


def test_plain_text_against_a_starttls_server_is_refused() -> None:
    with FakeSmtpServer(starttls=True) as fake:
        with SmtpSender(config_for(fake, security="none")) as sender, pytest.raises(SmtpConfigError) as info:
            sender.send(make_spec())
        assert info.value.code == 530


def test_wrong_password_is_terminal() -> None:
    with FakeSmtpServer(require_auth=True) as fake:
        sender = SmtpSender(config_for(fake, username="user", password="wrong"))
        with sender, pytest.raises(SmtpAuthError) as info:
            sender.send(make_spec())
        assert info.value.code == 535
        assert info.value.stage == "auth"
        assert isinstance(info.value, TerminalError)
        with sender, pytest.raises(SmtpAuthError):
            sender.test_connection()


def test_missing_credentials_are_an_auth_error() -> None:
    with FakeSmtpServer(require_auth=True) as fake, SmtpSender(config_for(fake)) as sender:
        with pytest.raises(SmtpAuthError) as info:
            sender.send(make_spec())
        assert info.value.code == 530


def test_test_connection(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    sender.test_connection()
    sender.send(make_spec())  # reuses the tested connection
    assert fake.connections == 1


def test_send_many_reuses_one_connection(fake: FakeSmtpServer, sender: SmtpSender, limiter: RecordingLimiter) -> None:
    results = sender.send_many([make_spec(n) for n in range(1, 6)])
    assert all(isinstance(r, SendResult) for r in results)
    assert fake.connections == 1
    assert limiter.acquired == 5
    counts = fake.count_by_message_id()
    assert sorted(counts) == [f"<msg_{n:04d}@shop.example>" for n in range(1, 6)]
    assert set(counts.values()) == {1}
    assert {m.session_id for m in fake.messages} == {1}


def test_a_rejected_recipient_fails_only_its_message(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    fake.reject_recipients["customer2@example.com"] = (550, "5.1.1 <customer2@example.com>: user unknown")
    results = sender.send_many([make_spec(n) for n in (1, 2, 3)])
    assert isinstance(results[0], SendResult)
    assert isinstance(results[2], SendResult)
    rejected = results[1]
    assert isinstance(rejected, SmtpRecipientRejected)
    assert (rejected.code, rejected.enhanced_status, rejected.stage) == (550, "5.1.1", "rcpt")
    assert rejected.suppress  # the caller adds the address to the suppression list
    assert rejected.message_id == "<msg_0002@shop.example>"
    assert "customer2" not in str(rejected)  # scrubbed
    assert fake.connections == 1
    assert [m.rcpt_tos for m in fake.messages] == [("customer1@example.com",), ("customer3@example.com",)]


def test_policy_rejection_is_terminal_but_not_suppressed(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    fake.reject_recipients["customer1@example.com"] = (550, "5.7.1 Recipient address rejected: Access denied")
    with pytest.raises(SmtpRecipientRejected) as info:
        sender.send(make_spec())
    assert not info.value.suppress


def test_451_is_transient_and_the_connection_stays_usable(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    fake.fail_next = 1
    with pytest.raises(SmtpTransientError) as info:
        sender.send(make_spec())
    assert isinstance(info.value, TransientError)
    assert (info.value.code, info.value.stage, info.value.maybe_delivered) == (451, "data", False)
    sender.send(make_spec())
    assert fake.connections == 1
    assert fake.count_by_message_id() == {"<msg_0001@shop.example>": 1}


def test_451_at_rcpt_is_transient(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    fake.fail_next, fake.fail_stage = 1, "rcpt"
    fake.fail_reply = (451, "4.7.1 Greylisted, please try again later")
    with pytest.raises(SmtpTransientError) as info:
        sender.send(make_spec())
    assert info.value.stage == "rcpt"


def test_554_after_data_is_a_message_rejection(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    fake.fail_next, fake.fail_reply = 1, (554, "5.7.1 Message rejected as spam")
    with pytest.raises(SmtpMessageRejected) as info:
        sender.send(make_spec())
    assert info.value.code == 554


def test_disconnect_mid_data_is_transient_and_a_retry_succeeds(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    fake.disconnect_next = 1
    with pytest.raises(SmtpTransientError) as info:
        sender.send(make_spec())
    # From the client's side the outcome is unknown, so it says so and does not resend by itself.
    assert info.value.maybe_delivered
    assert info.value.stage == "data"
    assert fake.messages == []
    result = sender.send(make_spec())  # what the task engine does on a TransientError
    assert result.accepted
    assert fake.count_by_message_id() == {"<msg_0001@shop.example>": 1}
    assert fake.connections == 2


def test_the_unavoidable_window_leaves_a_recognisable_duplicate(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    """The server queued the message but the connection died before its 250 reached us."""
    fake.disconnect_next, fake.disconnect_after_accept = 1, True
    with pytest.raises(SmtpTransientError) as info:
        sender.send(make_spec())
    assert info.value.maybe_delivered
    sender.send(make_spec())
    # Two copies, one Message-ID: receivers and our bounce handling can tell it is the same mail.
    assert fake.count_by_message_id() == {"<msg_0001@shop.example>": 2}


def test_a_stale_pooled_connection_is_replaced_transparently(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    sender.send(make_spec(1))
    fake.drop_connections()  # e.g. the relay's idle timeout
    sender.send(make_spec(2))
    assert fake.connections == 2
    assert sender.connections_opened == 2
    assert set(fake.count_by_message_id().values()) == {1}


def test_server_message_cap_reconnects(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    fake.max_messages_per_connection = 2
    results = sender.send_many([make_spec(n) for n in range(1, 6)])
    assert all(isinstance(r, SendResult) for r in results)
    assert fake.connections == 3
    assert set(fake.count_by_message_id().values()) == {1}


def test_client_message_cap_reconnects_proactively(fake: FakeSmtpServer) -> None:
    with SmtpSender(config_for(fake, max_messages_per_connection=2)) as sender:
        sender.send_many([make_spec(n) for n in range(1, 6)])
    assert fake.connections == 3


def test_throttling_reply_penalizes_the_limiter(
    fake: FakeSmtpServer, sender: SmtpSender, limiter: RecordingLimiter
) -> None:
    fake.fail_next, fake.fail_stage = 2, "mail"
    fake.fail_reply = (421, "4.7.0 Too many messages, slow down")
    with pytest.raises(SmtpTransientError) as info:
        sender.send(make_spec())  # 421 closes the connection: one reconnect, refused again
    assert info.value.code == 421
    assert info.value.retry_after == sender.config.throttle_backoff
    assert limiter.penalties == [sender.config.throttle_backoff] * 2
    assert limiter.acquired == 2
    sender.send(make_spec())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_transient_and_stops_the_batch() -> None:
    config = SmtpConfig("127.0.0.1", _closed_port(), "none", timeout=2.0, local_hostname="worker.test")
    with SmtpSender(config) as sender:
        results = sender.send_many([make_spec(n) for n in (1, 2, 3)])
    assert all(isinstance(r, SmtpTransientError) and r.stage == "connect" for r in results)
    assert isinstance(results[1], SmtpError)
    assert results[1].message.startswith("not attempted")
    assert [r.message_id for r in results if isinstance(r, SmtpError)] == [
        f"<msg_{n:04d}@shop.example>" for n in (1, 2, 3)
    ]


def test_timeout_is_transient(fake: FakeSmtpServer) -> None:
    fake.latency_ms = 400
    with SmtpSender(config_for(fake, timeout=0.1)) as sender, pytest.raises(SmtpTransientError) as info:
        sender.send(make_spec())
    assert info.value.stage == "mail"
    assert not info.value.maybe_delivered


def test_logs_carry_no_addresses_or_bodies(
    fake: FakeSmtpServer, sender: SmtpSender, caplog: pytest.LogCaptureFixture
) -> None:
    fake.reject_recipients["customer2@example.com"] = (550, "5.1.1 <customer2@example.com>: user unknown")
    with caplog.at_level(logging.DEBUG, logger="storeloop.integrations.smtp"):
        sender.send_many([make_spec(1), make_spec(2)])
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("storeloop"))
    assert "msg_0002" in text
    assert "customer" not in text
    assert "your order" not in text


def test_plaintext_credentials_to_a_remote_host_are_refused() -> None:
    with pytest.raises(ValueError, match="without TLS"):
        SmtpConfig("smtp.example.com", 25, "none", "user", "pass")
    SmtpConfig("localhost", 25, "none", "user", "pass")  # loopback relay is fine


# --- batches: each message's content goes out with the next message's envelope (RFC 2920) --------


class _FaultBeforeMessage(RecordingLimiter):
    """Arms a fault on the fake when message ``n`` of a batch takes its slot: by then the message's
    envelope has already gone out with the previous message's content."""

    def __init__(self, n: int, arm: Callable[[], None]) -> None:
        super().__init__()
        self.n, self.arm = n, arm

    def acquire(self, cost: int = 1) -> None:
        super().acquire(cost)
        if self.acquired == self.n:
            self.arm()


def _batch_with(fake: FakeSmtpServer, n: int, arm: Callable[[], None]) -> list[SendResult | SmtpError]:
    with SmtpSender(config_for(fake), limiter=_FaultBeforeMessage(n, arm)) as sender:
        return sender.send_many([make_spec(i) for i in range(1, 5)])


def test_a_batch_rides_one_connection_with_one_round_trip_per_message(fake: FakeSmtpServer) -> None:
    results = _batch_with(fake, 0, lambda: None)
    assert all(isinstance(r, SendResult) for r in results)
    assert (fake.connections, sorted(fake.count_by_message_id().values())) == (1, [1, 1, 1, 1])
    # What the server received, write by write: EHLO, the first envelope, each message's content
    # with the next one's envelope (the last alone), QUIT. One at a time it would be 1 + 2 x 4 + 1.
    assert fake.reads_by_session[1] == 1 + 1 + 4 + 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [((451, "4.3.0 Try again later"), SmtpTransientError), ((554, "5.7.1 Spam"), SmtpMessageRejected)],
)
def test_a_refusal_at_the_end_of_data_in_a_batch_fails_only_that_message(
    fake: FakeSmtpServer, reply: tuple[int, str], error: type[SmtpError]
) -> None:
    def arm() -> None:
        fake.fail_next, fake.fail_stage, fake.fail_reply = 1, "data", reply

    results = _batch_with(fake, 2, arm)
    assert [type(r) for r in results] == [SendResult, error, SendResult, SendResult]
    assert (results[1].code, results[1].stage, results[1].message_id) == (reply[0], "data", "<msg_0002@shop.example>")
    assert not getattr(results[1], "maybe_delivered", False)
    # No RSET went out while the next message's DATA was open: it would have become its content.
    assert fake.count_by_message_id() == {f"<msg_{n:04d}@shop.example>": 1 for n in (1, 3, 4)}
    assert all(b"RSET" not in m.raw for m in fake.messages)
    assert fake.connections == 1


def test_a_closing_reply_at_the_end_of_data_in_a_batch_sends_the_rest_on_a_new_connection(
    fake: FakeSmtpServer,
) -> None:
    def arm() -> None:
        fake.fail_next, fake.fail_stage, fake.fail_reply = 1, "data", (421, "4.3.2 Shutting down")

    results = _batch_with(fake, 2, arm)
    assert all(isinstance(r, SendResult) for r in results)  # message 2 again, once, on the new one
    assert fake.count_by_message_id() == {f"<msg_{n:04d}@shop.example>": 1 for n in (1, 2, 3, 4)}
    assert fake.connections == 2


@pytest.mark.parametrize("latency_ms", [0, 20])  # a slow server reads the envelope sent ahead late
@pytest.mark.parametrize(("kept", "lost"), [(False, 3), (True, 2)])
def test_a_connection_lost_awaiting_a_batch_messages_reply_never_resends_it(
    fake: FakeSmtpServer, kept: bool, lost: int, latency_ms: int
) -> None:
    """Armed when message 2 takes its slot. Dropped mid-DATA, it is message 3 whose DATA went out
    with message 2's content (not kept); dropped after accepting, message 2 (kept, reply lost).
    Either way that message's outcome is unknown and it is not resent; the rest go, once each,
    on a new connection."""

    def arm() -> None:
        # Message 2's DATA went out with message 1's content; the server may not have read it yet.
        # Arming before it has would drop message 2 instead of 3, so wait until it has.
        deadline = time.monotonic() + 5
        while fake.data_commands < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        fake.disconnect_next, fake.disconnect_after_accept = 1, kept

    fake.latency_ms = latency_ms
    results = _batch_with(fake, 2, arm)
    unknown = results[lost - 1]
    assert isinstance(unknown, SmtpTransientError)
    assert (unknown.maybe_delivered, unknown.message_id) == (True, f"<msg_{lost:04d}@shop.example>")
    assert all(isinstance(r, SendResult) for n, r in enumerate(results, 1) if n != lost)
    expected = (1, 2, 3, 4) if kept else (1, 2, 4)
    assert fake.count_by_message_id() == {f"<msg_{n:04d}@shop.example>": 1 for n in expected}
    assert fake.connections == 2
