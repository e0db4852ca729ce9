"""The fake relay on the wire: address parsing (fast path == aiosmtpd), EHLO, pipelined commands."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import string
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.integrations.smtp.fake.server import plain_address

CONTENT = b"Subject: pipelined\r\nMessage-ID: <p1@shop.example>\r\n\r\nHello\r\n.line with a dot\r\n"
END_OF_DATA = b".\r\n"


class Wire:
    """A raw SMTP connection: bytes out exactly as given, replies read one at a time."""

    def __init__(self, fake: FakeSmtpServer) -> None:
        self.sock = socket.create_connection((fake.host, fake.port), timeout=5)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith("220 ")

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode()
            assert line.endswith("\r\n"), line
            lines.append(line[:-2])
            if line[3:4] != "-":
                return "\n".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> str:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def wire(fake: FakeSmtpServer) -> Iterator[Wire]:
    connection = Wire(fake)
    assert connection.command("EHLO client.test").startswith("250-fake-smtp.storeloop.test")
    yield connection
    connection.close()


# --- address parsing ----------------------------------------------------------------------------

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
NOISE = ' \t."()<>@,:;\\[]=?é\x00\x7f'
_loop = asyncio.new_event_loop()
_reference = SMTP(handler=object(), loop=_loop)  # only for its _getaddr: the function we must match


def aiosmtpd_getaddr(arg: str, local_part_limit: int) -> tuple[str | None, str | None] | type[BaseException]:
    _reference.local_part_limit = local_part_limit
    try:
        return SMTP._getaddr(_reference, arg)
    except Exception as error:  # e.g. IndexError for "<": the fake must fail the same way
        return type(error)


atoms = st.text(ATEXT, min_size=1, max_size=8)
dot_atoms = st.lists(atoms, min_size=1, max_size=3).map(".".join)
params = st.sampled_from(["", " SIZE=1000", " BODY=8BITMIME SIZE=12", "   SMTPUTF8", " X-Y=z"])
plain_addresses = st.builds(
    lambda angle, local, domain, tail: (f"<{local}@{domain}>" if angle else f"{local}@{domain}") + tail,
    st.booleans(),
    dot_atoms,
    dot_atoms,
    params,
)
# Near misses: plain pieces glued with noise in every place the parser treats specially.
pieces = st.one_of(atoms, st.text(NOISE, min_size=1, max_size=3), st.sampled_from(["=?utf-8?q?x?=", "<>", "@", "."]))
noisy = st.lists(pieces, max_size=8).map("".join)
tails = st.one_of(params, st.sampled_from([" ", "x", " (c) X", "\tX", " .x", " @x", ">", " SIZE=1 ", " é"]))
near_misses = st.builds(lambda a, b, c: a + b + c, st.sampled_from(["", "<", " <", "<>"]), noisy, tails)


@settings(max_examples=400, deadline=None)
@given(arg=st.one_of(plain_addresses, near_misses, st.text(ATEXT + NOISE, max_size=30)), limit=st.sampled_from([0, 3]))
@example(arg="<", limit=0)
@example(arg="<> SIZE=1", limit=0)
@example(arg="<abcd@x.example>", limit=3)
def test_fast_address_parse_equals_aiosmtpd(arg: str, limit: int) -> None:
    fast = plain_address(arg, limit)
    if fast is not None:  # None: the fake asks aiosmtpd itself
        assert fast == aiosmtpd_getaddr(arg, limit)


@settings(max_examples=200, deadline=None)
# "=?" opens an encoded word wherever it appears: by design those go to aiosmtpd's own parser.
@given(arg=plain_addresses.filter(lambda arg: "=?" not in arg))
@example(arg="0@x.example")
def test_plain_forms_take_the_fast_path(arg: str) -> None:
    fast = plain_address(arg)
    assert fast is not None
    assert fast == aiosmtpd_getaddr(arg, 0)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("", ("", "")),
        ("<>", ("<>", "")),
        ("<> SIZE=10", ("<>", " SIZE=10")),  # aiosmtpd keeps the space after "<>" (and upper().split() it)
        ("<shop@shop.example>", ("shop@shop.example", "")),
        ("shop@shop.example", ("shop@shop.example", "")),
        ("<shop@shop.example> SIZE=1000 BODY=8BITMIME", ("shop@shop.example", "SIZE=1000 BODY=8BITMIME")),
        ("shop@shop.example  SMTPUTF8", ("shop@shop.example", "SMTPUTF8")),
        ("<first.last+tag@mail.shop-1.example>", ("first.last+tag@mail.shop-1.example", "")),
    ],
)
def test_plain_forms(arg: str, expected: tuple[str, str]) -> None:
    assert plain_address(arg) == expected == aiosmtpd_getaddr(arg, 0)


@pytest.mark.parametrize(
    "arg",
    [
        '<"shop keeper"@shop.example>',  # quoted local part
        "<shop(comment)@shop.example>",
        "<@relay.example:shop@shop.example>",  # source route
        "< shop@shop.example>",
        "<shop@shop.example> (c) SIZE=1",  # the parser eats comments after the address
        "shop@shop.example .org",  # obs-domain continues over the space
        "shop@shop.example @x",
        "<shop@shop.example>SIZE=1",
        "<shop@shop.example>\tSIZE=1",
        "<shop@shop.example",
        "<=?utf-8?q?shop?=@shop.example>",  # an encoded word, decoded by the parser
        "<josé@shop.example>",
        "<shop..keeper@shop.example>",
        "<shop@[192.0.2.1]>",
        "<postmaster>",
        "<",
    ],
)
def test_other_forms_are_left_to_aiosmtpd(arg: str) -> None:
    assert plain_address(arg) is None


def test_local_part_limit_is_applied_like_aiosmtpd() -> None:
    assert plain_address("<abc@x.example>", 3) == ("abc@x.example", "") == aiosmtpd_getaddr("<abc@x.example>", 3)
    assert plain_address("<abcd@x.example>", 3) == (None, None) == aiosmtpd_getaddr("<abcd@x.example>", 3)


@pytest.mark.parametrize(
    ("mail", "rcpt", "stored"),
    [
        ("<shop@shop.example>", "<a@example.com>", ("shop@shop.example", ("a@example.com",))),
        ("shop@shop.example SIZE=200", "a@example.com", ("shop@shop.example", ("a@example.com",))),
        ("<>", "<a@example.com>", ("<>", ("a@example.com",))),
        ('<"shop keeper"@shop.example>', "<a(x)@example.com>", ('"shop keeper"@shop.example', ("a@example.com",))),
        ("<@relay.example:shop@shop.example>", "<josé@example.com>", ("shop@shop.example", ("josé@example.com",))),
    ],
)
def test_addresses_over_the_wire(
    fake: FakeSmtpServer, wire: Wire, mail: str, rcpt: str, stored: tuple[str, tuple[str, ...]]
) -> None:
    assert wire.command(f"MAIL FROM:{mail}") == "250 2.1.0 OK"
    assert wire.command(f"RCPT TO:{rcpt}") == "250 2.1.5 OK"
    assert wire.command("DATA") == "354 End data with <CR><LF>.<CR><LF>"
    wire.send(CONTENT + END_OF_DATA)
    assert wire.reply() == "250 2.0.0 OK: queued as FAKE000001"
    assert [(m.mail_from, m.rcpt_tos) for m in fake.messages] == [stored]


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        ("MAIL FROM:<shop@shop.example.>", "553 5.1.3 Error: malformed address"),
        (
            "MAIL FROM:<shop@shop.example> SIZE=99999999999",
            "552 Error: message size exceeds fixed maximum message size",
        ),
        ("MAIL FROM:<shop@shop.example> FOO=1", "555 MAIL FROM parameters not recognized or not implemented"),
        ("MAIL FROM:", "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"),
    ],
)
def test_refused_mail_from(fake: FakeSmtpServer, wire: Wire, line: str, answer: str) -> None:
    assert wire.command(line) == answer
    assert wire.command("RCPT TO:<a@example.com>") == "503 Error: need MAIL command"
    assert fake.messages == []


# --- EHLO and pipelining ------------------------------------------------------------------------

EHLO_LINES = ["fake-smtp.storeloop.test", "SIZE 33554432", "8BITMIME", "SMTPUTF8", "AUTH LOGIN PLAIN"]


def test_ehlo_advertises_pipelining(fake: FakeSmtpServer) -> None:
    with smtplib.SMTP(fake.host, fake.port, local_hostname="t.test", timeout=5) as client:
        assert client.ehlo() == (250, "\n".join([*EHLO_LINES, "PIPELINING", "HELP"]).encode())
        assert client.has_extn("pipelining")
        assert client.sendmail("a@shop.example", ["b@example.com"], CONTENT) == {}
    assert [m.rcpt_tos for m in fake.messages] == [("b@example.com",)]


def test_pipelining_can_be_switched_off() -> None:
    with (
        FakeSmtpServer(pipelining=False) as fake,
        smtplib.SMTP(fake.host, fake.port, local_hostname="t.test", timeout=5) as client,
    ):
        assert client.ehlo() == (250, "\n".join([*EHLO_LINES, "HELP"]).encode())
        assert not client.has_extn("pipelining")


def test_starttls_server_advertises_pipelining_too() -> None:
    with (
        FakeSmtpServer(starttls=True) as fake,
        smtplib.SMTP(fake.host, fake.port, local_hostname="t.test", timeout=5) as client,
    ):
        code, text = client.ehlo()
        assert (code, text.decode().split("\n")[-3:]) == (250, ["STARTTLS", "PIPELINING", "HELP"])


def test_helo_still_works(fake: FakeSmtpServer) -> None:
    with smtplib.SMTP(fake.host, fake.port, local_hostname="t.test", timeout=5) as client:
        assert client.helo() == (250, b"fake-smtp.storeloop.test")
        assert client.sendmail("a@shop.example", ["b@example.com"], CONTENT) == {}
    assert len(fake.messages) == 1


def test_pipelined_transaction_is_answered_in_order_and_stored_once(fake: FakeSmtpServer, wire: Wire) -> None:
    wire.send(b"MAIL FROM:<shop@shop.example>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n")  # one write
    assert [wire.reply(), wire.reply(), wire.reply()] == [
        "250 2.1.0 OK",
        "250 2.1.5 OK",
        "354 End data with <CR><LF>.<CR><LF>",
    ]
    wire.send(CONTENT + END_OF_DATA)
    assert wire.reply() == "250 2.0.0 OK: queued as FAKE000001"
    assert wire.command("QUIT") == "221 Bye"
    (message,) = fake.messages
    assert (message.mail_from, message.rcpt_tos) == ("shop@shop.example", ("a@example.com",))
    assert message.raw == b"Subject: pipelined\r\nMessage-ID: <p1@shop.example>\r\n\r\nHello\r\nline with a dot\r\n"
    assert fake.count_by_message_id() == {"<p1@shop.example>": 1}


def test_pipelined_transactions_back_to_back(fake: FakeSmtpServer, wire: Wire) -> None:
    for n in (1, 2):
        wire.send(b"RSET\r\nMAIL FROM:<shop@shop.example>\r\nRCPT TO:<a%d@example.com>\r\nDATA\r\n" % n)
        assert [wire.reply() for _ in range(4)] == [
            "250 OK",
            "250 2.1.0 OK",
            "250 2.1.5 OK",
            "354 End data with <CR><LF>.<CR><LF>",
        ]
        wire.send(CONTENT + END_OF_DATA)
        assert wire.reply() == f"250 2.0.0 OK: queued as FAKE00000{n}"
    assert [m.rcpt_tos for m in fake.messages] == [("a1@example.com",), ("a2@example.com",)]


def test_pipelined_commands_after_a_refused_mail_get_errors(fake: FakeSmtpServer, wire: Wire) -> None:
    fake.fail_stage, fake.fail_next = "mail", 1
    wire.send(b"MAIL FROM:<shop@shop.example>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n")
    assert [wire.reply(), wire.reply(), wire.reply()] == [
        "451 4.3.0 Temporary local problem, try again later",
        "503 Error: need MAIL command",
        "503 Error: need RCPT command",
    ]
    assert wire.command("RSET") == "250 OK"
    assert fake.messages == []
    assert fake.fail_next == 0
    # The connection is still good for the next transaction.
    wire.send(b"MAIL FROM:<shop@shop.example>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n")
    assert [wire.reply(), wire.reply(), wire.reply()][0] == "250 2.1.0 OK"
    wire.send(CONTENT + END_OF_DATA)
    assert wire.reply() == "250 2.0.0 OK: queued as FAKE000001"
    assert len(fake.messages) == 1


def test_pipelined_commands_after_a_refused_recipient_get_errors(fake: FakeSmtpServer, wire: Wire) -> None:
    fake.reject_recipients["a@example.com"] = (550, "5.1.1 user unknown")
    wire.send(b"MAIL FROM:<shop@shop.example>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n")
    assert [wire.reply(), wire.reply(), wire.reply()] == [
        "250 2.1.0 OK",
        "550 5.1.1 user unknown",
        "503 Error: need RCPT command",
    ]
    assert wire.command("RSET") == "250 OK"
    assert fake.messages == []
