"""The HTTP plumbing under the fake Twilio (``fakehttp.TrackedHandler``) and the fake's cheaper helpers,
checked against the stdlib code they replace: the same answers, byte for byte, where they must agree."""

from __future__ import annotations

import base64
import email.utils
import http.client
import io
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from storeloop.integrations.fakehttp import (
    MAX_HEADERS,
    MAX_LINE,
    HeaderError,
    ServerThread,
    TrackedHandler,
    TrackingHTTPServer,
    read_headers,
)
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.integrations.twilio.fake.records import rfc2822
from storeloop.integrations.twilio.fake.server import form_fields

TO = "+14155552671"


# --- raw HTTP --------------------------------------------------------------------------------------


def exchange(url: str, request: bytes) -> bytes:
    """Send ``request``, half-close, and return every byte the server wrote until it closed."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the server reads EOF after its answer(s), then closes
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def without_clock(raw: bytes) -> bytes:
    return re.sub(rb"(?m)^(Date|Server): [^\r\n]*\r\n", b"", raw)


def status_lines(raw: bytes) -> list[bytes]:
    return re.findall(rb"(?m)^HTTP/1\.[01] \d{3} [^\r\n]*", raw)


def _echo(handler: BaseHTTPRequestHandler) -> None:
    length = int(handler.headers.get("Content-Length") or 0)
    body = orjson.dumps(
        {
            "command": handler.command,
            "path": handler.path,
            "version": handler.request_version,
            "items": list(handler.headers.items()),
            "close": handler.close_connection,
            "body": handler.rfile.read(length).decode("latin-1") if length else "",
        }
    )
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class StdlibEcho(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        _echo(self)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return


class TrackedEcho(TrackedHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        _echo(self)

    do_POST = do_GET


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    stdlib = ThreadingHTTPServer(("127.0.0.1", 0), StdlibEcho)
    stdlib.daemon_threads = True
    stdlib_thread = threading.Thread(target=stdlib.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    stdlib_thread.start()
    tracked = ServerThread(TrackingHTTPServer(("127.0.0.1", 0), TrackedEcho), name="tracked-echo")
    tracked.start()
    yield f"http://127.0.0.1:{stdlib.server_address[1]}", tracked.url
    tracked.stop()
    stdlib.shutdown()
    stdlib.server_close()


def _many_headers(count: int) -> bytes:
    return b"GET /h HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(count)) + b"\r\n"


SAME_AS_STDLIB = {
    "simple": b"GET /x?a=1 HTTP/1.1\r\nHost: h\r\n\r\n",
    "double slash": b"GET //evil.example/x HTTP/1.1\r\nHost: h\r\n\r\n",
    "headers kept as the stdlib keeps them": (
        b"POST /p HTTP/1.1\r\nhost:  h \r\nX-Dup: 1\r\nx-dup:\t2\r\nX-Empty:\r\nX-Latin: caf\xe9\r\n"
        b"X-{odd}!#: v\r\ncontent-LENGTH: 5\r\n\r\nhello"
    ),
    "bare LF line ends": b"GET /lf HTTP/1.1\nHost: h\nX-A: b\n\n",
    "two requests on one connection": b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
    "HTTP/1.0 closes": b"GET /x HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n",
    "HTTP/1.0 keep-alive": b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /y HTTP/1.0\r\n\r\n",
    "Connection: close": b"GET /x HTTP/1.1\r\nConnection: CLOSE\r\n\r\nGET /never HTTP/1.1\r\n\r\n",
    "Expect: 100-continue": b"POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-Continue\r\n\r\nhi",
    "leading zeros in the version": b"GET /x HTTP/01.01\r\n\r\n",
    "headers end at EOF": b"GET /x HTTP/1.1\r\nHost: h\r\n",
    "HTTP/0.9": b"GET /old\r\n\r\n",
    "HTTP/0.9 POST": b"POST /old\r\n\r\n",
    "bad version": b"GET /x HTTP/1.x\r\n\r\n",
    "version with a superscript digit": b"GET /x HTTP/1.\xb2\r\n\r\n",
    "three-part version": b"GET /x HTTP/1.1.1\r\n\r\n",
    "HTTP/2": b"GET /x HTTP/2.0\r\n\r\n",
    "four words": b"GET /x y HTTP/1.1\r\n\r\n",
    "one word": b"GET\r\n\r\n",
    "empty request line": b"\r\n",
    "longest header line": b"GET /x HTTP/1.1\r\nX-Long: " + b"a" * (MAX_LINE - 10) + b"\r\n\r\n",
    "header line too long": b"GET /x HTTP/1.1\r\nX-Long: " + b"a" * (MAX_LINE - 9) + b"\r\n\r\n",
    "most headers": _many_headers(MAX_HEADERS - 1),  # the empty line counts: 99 headers + 1
    "too many headers": _many_headers(MAX_HEADERS),
}


@pytest.mark.parametrize("request_bytes", SAME_AS_STDLIB.values(), ids=SAME_AS_STDLIB.keys())
def test_answers_like_the_stdlib_handler(servers: tuple[str, str], request_bytes: bytes) -> None:
    stdlib_url, tracked_url = servers
    expected = without_clock(exchange(stdlib_url, request_bytes))
    assert without_clock(exchange(tracked_url, request_bytes)) == expected


def test_the_limits_are_the_stdlib_ones(servers: tuple[str, str]) -> None:
    _, tracked_url = servers
    assert status_lines(exchange(tracked_url, SAME_AS_STDLIB["longest header line"])) == [b"HTTP/1.1 200 OK"]
    assert status_lines(exchange(tracked_url, SAME_AS_STDLIB["header line too long"])) == [
        b"HTTP/1.1 431 Line too long"
    ]
    assert status_lines(exchange(tracked_url, SAME_AS_STDLIB["most headers"])) == [b"HTTP/1.1 200 OK"]
    assert status_lines(exchange(tracked_url, SAME_AS_STDLIB["too many headers"])) == [b"HTTP/1.1 431 Too many headers"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /x HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n", b"HTTP/1.1 400 Obsolete line folding"),
        (b"GET /x HTTP/1.1\r\n\tX-A: one\r\n\r\n", b"HTTP/1.1 400 Obsolete line folding"),
        (b"GET /x HTTP/1.1\r\nNo colon here\r\n\r\n", b"HTTP/1.1 400 Bad header line"),
        (b"GET /x HTTP/1.1\r\nX-A : v\r\n\r\n", b"HTTP/1.1 400 Bad header line"),
        (b"GET /x HTTP/1.1\r\n: v\r\n\r\n", b"HTTP/1.1 400 Bad header line"),
        (b"GET /x HTTP/1.1\r\nX-A: a\rX-B: b\r\n\r\n", b"HTTP/1.1 400 Bad header line"),
    ],
    ids=["folded", "folded first line", "no colon", "space before colon", "no name", "bare CR"],
)
def test_header_lines_the_stdlib_would_mangle_are_refused(
    servers: tuple[str, str], request_bytes: bytes, status: bytes
) -> None:
    # The stdlib keeps folds as "one\r\n two" and silently moves the rest of a bad block to the body.
    _, tracked_url = servers
    raw = exchange(tracked_url, request_bytes)
    assert status_lines(raw) == [status]
    assert b"Connection: close\r\n" in raw
    assert b'"path"' not in raw  # the handler never ran


# --- read_headers against http.client.parse_headers -------------------------------------------------

names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"), min_size=1)
values = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=20)
header_lines = st.tuples(names, st.sampled_from(["", " ", "\t", "  \t"]), values, st.sampled_from(["\r\n", "\n"]))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(header_lines, max_size=12), end=st.sampled_from([b"\r\n", b"\n", b""]))
def test_read_headers_equals_parse_headers(lines: list[tuple[str, str, str, str]], end: bytes) -> None:
    block = "".join(f"{name}:{gap}{value}{eol}" for name, gap, value, eol in lines).encode("latin-1") + end
    stream = block + b"body" if end else block  # b"": the connection ends after the last header
    ours = read_headers(io.BytesIO(stream))
    theirs = http.client.parse_headers(io.BytesIO(stream))
    assert ours.items() == theirs.items()
    for name, _, _, _ in lines:
        for variant in (name, name.lower(), name.upper()):
            assert ours.get(variant) == theirs.get(variant)
            assert ours[variant] == theirs[variant]
            assert ours.get_all(variant) == theirs.get_all(variant)
            assert (variant in ours) == (variant in theirs)
    assert ours.get("X-Not-Sent") is None
    assert ours.get_all("X-Not-Sent") is None
    assert "X-Not-Sent" not in ours


def test_read_headers_stops_at_the_empty_line() -> None:
    stream = io.BytesIO(b"Host: h\r\n\r\nAuthorization: not a header\r\n")
    headers = read_headers(stream)
    assert headers.items() == [("Host", "h")]
    assert stream.read() == b"Authorization: not a header\r\n"


def test_read_headers_errors() -> None:
    with pytest.raises(HeaderError) as folded:
        read_headers(io.BytesIO(b"X-A: 1\r\n 2\r\n\r\n"))
    assert (folded.value.status, folded.value.message) == (400, "Obsolete line folding")
    with pytest.raises(HeaderError) as too_many:
        read_headers(io.BytesIO(b"X: 1\r\n" * MAX_HEADERS + b"\r\n"))
    assert (too_many.value.status, too_many.value.explain) == (431, "got more than 100 headers")


# --- the fake Twilio through it ---------------------------------------------------------------------


def _basic(twilio: FakeTwilio) -> str:
    return "Basic " + base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()


def _create_request(twilio: FakeTwilio, *header_lines: str, body: str | None = None) -> bytes:
    form = body if body is not None else urlencode({"To": TO, "From": twilio.from_number, "Body": "Hi"})
    head = [f"POST /2010-04-01/Accounts/{twilio.account_sid}/Messages.json HTTP/1.1", "Host: api.twilio.test"]
    head += header_lines or (
        f"Authorization: {_basic(twilio)}",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(form.encode())}",
    )
    return ("\r\n".join(head) + "\r\n\r\n" + form).encode()


def test_header_names_are_case_insensitive(twilio: FakeTwilio) -> None:
    form = urlencode({"To": TO, "From": twilio.from_number, "Body": "Hi"})
    request = _create_request(
        twilio,
        f"authorization: {_basic(twilio)}",
        "CONTENT-TYPE: application/x-www-form-urlencoded",
        f"content-length: {len(form)}",
    )
    assert status_lines(exchange(twilio.url, request)) == [b"HTTP/1.1 201 Created"]
    assert [m.to for m in twilio.messages] == [TO]


def test_a_folded_header_is_refused_and_nothing_is_created(twilio: FakeTwilio) -> None:
    form = urlencode({"To": TO, "From": twilio.from_number, "Body": "Hi"})
    request = _create_request(twilio, f"Authorization: {_basic(twilio)}", " continued", f"Content-Length: {len(form)}")
    assert status_lines(exchange(twilio.url, request)) == [b"HTTP/1.1 400 Obsolete line folding"]
    assert twilio.messages == []
    assert twilio.requests == []


def test_expect_100_continue_is_answered_before_the_body(twilio: FakeTwilio) -> None:
    form = urlencode({"To": TO, "From": twilio.from_number, "Body": "Hi"}).encode()
    head = _create_request(
        twilio, f"Authorization: {_basic(twilio)}", f"Content-Length: {len(form)}", "Expect: 100-continue", body=""
    )
    host, port = twilio.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock, sock.makefile("rb") as answers:
        sock.sendall(head)
        assert answers.readline() == b"HTTP/1.1 100 Continue\r\n"  # body not sent yet: no deadlock
        assert answers.readline() == b"\r\n"
        sock.sendall(form)
        assert answers.readline() == b"HTTP/1.1 201 Created\r\n"
    assert len(twilio.messages) == 1


def test_date_header_is_current_to_the_second(twilio: FakeTwilio) -> None:
    request = f"GET /2010-04-01/Accounts/{twilio.account_sid}.json HTTP/1.1\r\nAuthorization: {_basic(twilio)}\r\n\r\n"
    with time_machine.travel(datetime(2024, 5, 6, 7, 8, 9, 500_000, tzinfo=UTC), tick=False) as traveller:
        first = exchange(twilio.url, request.encode())
        again = exchange(twilio.url, request.encode())
        traveller.shift(timedelta(seconds=1))
        later = exchange(twilio.url, request.encode())
    assert re.findall(rb"Date: ([^\r]*)", first) == [b"Mon, 06 May 2024 07:08:09 GMT"]
    assert re.findall(rb"Date: ([^\r]*)", again) == [b"Mon, 06 May 2024 07:08:09 GMT"]
    assert re.findall(rb"Date: ([^\r]*)", later) == [b"Mon, 06 May 2024 07:08:10 GMT"]


def test_message_json_is_unchanged(twilio: FakeTwilio) -> None:
    form = urlencode({"To": TO, "From": twilio.from_number, "Body": "Grüße 👋 & 100% off", "StatusCallback": ""})
    request = _create_request(twilio, f"Authorization: {_basic(twilio)}", f"Content-Length: {len(form)}", body=form)
    with time_machine.travel(datetime(2023, 8, 24, 5, 1, 45, 123_000, tzinfo=UTC), tick=False):
        raw = exchange(twilio.url, request)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert status_lines(head) == [b"HTTP/1.1 201 Created"]
    assert b"Content-Type: application/json; charset=utf-8\r\n" in head
    assert f"Content-Length: {len(body)}\r\n".encode() in head
    created = orjson.loads(body)
    sid = created["sid"]
    uri = f"/2010-04-01/Accounts/{twilio.account_sid}/Messages/{sid}"
    assert created == {
        "account_sid": twilio.account_sid,
        "api_version": "2010-04-01",
        "body": "Grüße 👋 & 100% off",
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
        "date_sent": None,
        "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": twilio.from_number,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        "to": TO,
        "uri": f"{uri}.json",
    }
    assert list(created) == sorted(created)  # Twilio's key order, kept by orjson
    (record,) = twilio.requests
    assert record.form == {"To": TO, "From": twilio.from_number, "Body": "Grüße 👋 & 100% off", "StatusCallback": ""}


def test_control_api_rejects_bad_json(twilio: FakeTwilio) -> None:
    request = b"POST /__fake__/faults HTTP/1.1\r\nContent-Length: 9\r\n\r\n{not json"
    raw = exchange(twilio.url, request)
    assert status_lines(raw) == [b"HTTP/1.1 400 Bad Request"]
    assert twilio.faults.as_dict()["latency_ms"] == 0


# --- form_fields and rfc2822 against the stdlib -------------------------------------------------------

form_text = st.one_of(
    st.text(st.sampled_from("ab=&%+2F0é; "), max_size=30),
    st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=5).map(urlencode),
    st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), max_size=5).map(urlencode),
)


@settings(max_examples=300, deadline=None)
@given(text=form_text)
def test_form_fields_equal_parse_qs_first_values(text: str) -> None:
    expected = {name: found[0] for name, found in parse_qs(text, keep_blank_values=True).items()}
    assert form_fields(text) == expected


def test_form_fields_examples() -> None:
    assert form_fields("To=%2B4915198000001&Body=Ann%3A+20%25+off&To=%2B1&Empty=&Flag") == {
        "To": "+4915198000001",
        "Body": "Ann: 20% off",
        "Empty": "",
        "Flag": "",
    }
    assert form_fields("") == {}
    assert form_fields("&&") == {}


offsets = st.one_of(
    st.none(),
    st.just(UTC),
    st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(timezone),
)


@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(timezones=offsets))
def test_rfc2822_equals_email_utils(moment: datetime) -> None:
    assert rfc2822(moment) == email.utils.format_datetime(moment)


def test_rfc2822_examples() -> None:
    assert rfc2822(datetime(2023, 8, 24, 5, 1, 45, tzinfo=UTC)) == "Thu, 24 Aug 2023 05:01:45 +0000"
    assert rfc2822(datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == (
        "Tue, 02 Jan 2024 03:04:05 +0200"
    )
