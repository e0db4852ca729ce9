"""KeepAliveClient against a real loopback server: reuse, stale connections, failures, TLS, encoding."""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storeloop.integrations.keepalive import KeepAliveClient, _bypassed, form_encode
from storeloop.integrations.smtp.fake.tls import client_context, self_signed_cert, server_context

from .canned import Answer, CannedServer, Received

TIMEOUT = httpx.Timeout(5.0)


@pytest.fixture
def server() -> Iterator[CannedServer]:
    with CannedServer(default=Answer(200, b"ok")) as started:
        yield started


@pytest.fixture
def client(server: CannedServer) -> Iterator[KeepAliveClient]:
    with KeepAliveClient(server.url, timeout=TIMEOUT) as started:
        yield started


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- keep-alive ------------------------------------------------------------------------------------


def test_sequential_requests_share_one_connection(server: CannedServer, client: KeepAliveClient) -> None:
    for i in range(20):
        response = client.request("GET", f"/items/{i}")
        assert (response.status_code, response.content) == (200, b"ok")
    assert server.accepted == 1
    assert [r.target for r in server.requests] == [f"/items/{i}" for i in range(20)]
    assert {r.connection for r in server.requests} == {1}


def test_threads_share_the_pool_one_connection_per_concurrent_request() -> None:
    threads, rounds = 8, 25
    first_round = threading.Barrier(threads)  # the first 8 requests are all in flight at once

    def echo(request: Received) -> Answer:
        if request.target.endswith("/0"):
            first_round.wait(5)
        return Answer(200, request.target.encode())

    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []
    with CannedServer(responder=echo) as server, KeepAliveClient(server.url, timeout=TIMEOUT) as client:

        def work(worker: int) -> None:
            try:
                results[worker] = [client.request("GET", f"/w{worker}/{i}").content for i in range(rounds)]
            except BaseException as exc:  # surfaced below, in the test's thread
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(10)
    assert errors == []
    assert results == {w: [f"/w{w}/{i}".encode() for i in range(rounds)] for w in range(threads)}
    assert len(server.requests) == threads * rounds
    # Never more connections than requests in flight: after the first round every request reused one.
    assert server.accepted == threads


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    with (
        CannedServer(Answer(200, b"first", action="answer_then_close"), default=Answer(200, b"next")) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT) as client,
    ):
        assert client.request("POST", "/send", content=b"1").content == b"first"
        server.wait_for(lambda s: s.closed_by_server == 1)
        assert client.request("POST", "/send", content=b"2").content == b"next"  # no error
        assert [(r.body, r.connection) for r in server.requests] == [(b"1", 1), (b"2", 2)]  # each sent once
        assert server.accepted == 2


@pytest.mark.parametrize(
    ("expiry", "closed"),
    [
        (1e-9, 2),  # kept on release, found expired by the next request (which closes it)
        (0.0, 3),  # expired as soon as it is released
    ],
)
def test_idle_connections_expire(server: CannedServer, expiry: float, closed: int) -> None:
    with KeepAliveClient(server.url, timeout=TIMEOUT, keepalive_expiry=expiry) as client:
        for _ in range(3):
            client.request("GET", "/")
        server.wait_for(lambda s: s.closed_by_client == closed)  # closed, not leaked
    assert server.accepted == 3
    assert [r.connection for r in server.requests] == [1, 2, 3]


def test_no_idle_connections_kept_when_max_idle_is_zero(server: CannedServer) -> None:
    with KeepAliveClient(server.url, timeout=TIMEOUT, max_idle_connections=0) as client:
        client.request("GET", "/")
        client.request("GET", "/")
    assert server.accepted == 2


def test_connection_close_from_the_server_is_honoured() -> None:
    closing = Answer(200, b"bye", headers=(("Connection", "close"),), action="answer_then_close")
    with CannedServer(closing, default=Answer(200, b"ok")) as server, KeepAliveClient(server.url, timeout=5) as client:
        assert client.request("GET", "/a").content == b"bye"
        assert client.request("GET", "/b").content == b"ok"
    assert server.accepted == 2


def test_close_closes_idle_connections_and_refuses_new_requests(server: CannedServer) -> None:
    client = KeepAliveClient(server.url, timeout=TIMEOUT)
    client.request("GET", "/")
    assert not client.is_closed
    client.close()
    assert client.is_closed
    server.wait_for(lambda s: s.closed_by_client == 1)
    with pytest.raises(RuntimeError, match="closed"):
        client.request("GET", "/")
    assert len(server.requests) == 1


# --- failures: never resent ------------------------------------------------------------------------


def test_server_hanging_up_after_reading_the_request() -> None:
    with (
        CannedServer(Answer(action="hang_up"), default=Answer(200, b"ok")) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            client.request("POST", "/send", data={"Body": "secret"})
        assert len(server.requests) == 1  # not resent
        assert client.request("GET", "/after").content == b"ok"  # a new connection
        assert server.accepted == 2


def test_hang_up_on_a_reused_connection_is_not_resent_either() -> None:
    with (
        CannedServer(Answer(200, b"ok"), Answer(action="hang_up")) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT) as client,
    ):
        client.request("GET", "/warm")
        with pytest.raises(httpx.RemoteProtocolError):
            client.request("POST", "/send", content=b"once")
        assert [(r.target, r.connection) for r in server.requests] == [("/warm", 1), ("/send", 1)]
        assert server.accepted == 1


def test_reset_after_reading_the_request_is_a_read_error() -> None:
    with (
        CannedServer(Answer(action="reset")) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT) as client,
        pytest.raises(httpx.ReadError),
    ):
        client.request("POST", "/send", content=b"x")
    assert len(server.requests) == 1


def test_connection_refused_is_a_connect_error() -> None:
    with (
        KeepAliveClient(f"http://127.0.0.1:{_free_port()}", timeout=TIMEOUT) as client,
        pytest.raises(httpx.ConnectError, match="cannot connect") as info,
    ):
        client.request("POST", "/send", content=b"x")
    assert isinstance(info.value, httpx.TransportError)
    assert not isinstance(info.value, httpx.TimeoutException)


def test_connect_timeout() -> None:
    # Linux: a listen(0) socket whose one backlog slot is taken drops further SYNs, so connect hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        host, port = listener.getsockname()
        with (
            socket.create_connection((host, port), timeout=1),
            KeepAliveClient(f"http://{host}:{port}", timeout=httpx.Timeout(5.0, connect=0.2)) as client,
            pytest.raises(httpx.ConnectTimeout, match="timed out connecting"),
        ):
            client.request("POST", "/send", content=b"x")


def test_read_timeout_then_the_connection_is_not_reused() -> None:
    slow = threading.Event()
    with (
        CannedServer(Answer(200, b"late", hold=slow), default=Answer(200, b"ok")) as server,
        KeepAliveClient(server.url, timeout=httpx.Timeout(5.0, read=0.2)) as client,
    ):
        with pytest.raises(httpx.ReadTimeout, match="timed out reading"):
            client.request("POST", "/send", content=b"x")
        slow.set()
        assert client.request("GET", "/next").content == b"ok"
        assert [r.connection for r in server.requests] == [1, 2]


def test_write_timeout_when_the_server_stops_reading() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        # Larger than loopback's socket buffers together: sendall blocks once they are full.
        with (
            KeepAliveClient(f"http://127.0.0.1:{port}", timeout=httpx.Timeout(5.0, write=0.2)) as client,
            pytest.raises(httpx.WriteTimeout, match="timed out sending"),
        ):
            client.request("POST", "/upload", content=b"x" * (32 * 1024 * 1024))


# --- responses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_length_and_chunked_bodies_keep_the_connection(framing: str) -> None:
    body = b'{"sid": "SM123", "status": "queued", "padding": "' + b"p" * 100 + b'"}'
    answer = Answer(201, body, headers=(("Content-Type", "application/json"),), framing=framing)  # type: ignore[arg-type]
    with CannedServer(default=answer) as server, KeepAliveClient(server.url, timeout=TIMEOUT) as client:
        for _ in range(3):
            response = client.request("GET", "/m")
            assert (response.status_code, response.content) == (201, body)
            assert response.headers.get("content-type") == "application/json"
    assert server.accepted == 1


def test_close_delimited_body_is_read_to_the_end_and_not_reused() -> None:
    answer = Answer(200, b"all of it, until EOF", framing="close")
    with (
        CannedServer(answer, default=Answer(200, b"ok")) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT) as client,
    ):
        assert client.request("GET", "/a").content == b"all of it, until EOF"
        assert client.request("GET", "/b").content == b"ok"
    assert server.accepted == 2


def test_truncated_body_is_a_protocol_error_and_the_connection_is_dropped() -> None:
    short = Answer(200, b"12345", headers=(("Content-Length", "10"),), framing="close")
    with (
        CannedServer(short, default=Answer(200, b"ok")) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="IncompleteRead"):
            client.request("GET", "/a")
        assert client.request("GET", "/b").content == b"ok"
    assert server.accepted == 2


def test_headers_are_case_insensitive_and_repeated_ones_joined() -> None:
    answer = Answer(429, b"", headers=(("Retry-After", "3"), ("X-Twice", "a"), ("x-twice", "b")))
    with CannedServer(default=answer) as server, KeepAliveClient(server.url, timeout=TIMEOUT) as client:
        response = client.request("GET", "/")
    assert response.status_code == 429
    assert response.headers.get("retry-after") == response.headers["RETRY-AFTER"] == "3"
    assert response.headers["X-Twice"] == "a, b"
    assert response.headers.get("missing") is None
    assert "retry-after" in response.headers
    assert list(response.headers) == ["retry-after", "x-twice", "content-length"]
    assert len(response.headers) == 3
    assert repr(response) == "Response(status_code=429)"


# --- what goes on the wire -------------------------------------------------------------------------


def test_basic_auth_default_headers_and_form_encoding(server: CannedServer) -> None:
    with KeepAliveClient(
        server.url + "/2010-04-01/",
        headers={"User-Agent": "Storeloop/test", "Accept": "application/json"},
        auth=("AC123", "tök:en"),
        timeout=TIMEOUT,
    ) as client:
        client.request("POST", "/Accounts/AC123/Messages.json", data={"To": "+1 415", "Body": "a&b=c ü"})
    (request,) = server.requests
    assert (request.method, request.target) == ("POST", "/2010-04-01/Accounts/AC123/Messages.json")
    assert request.body == b"To=%2B1+415&Body=a%26b%3Dc+%C3%BC"
    assert request.headers == {
        "host": f"127.0.0.1:{server.port}",
        "accept-encoding": "identity",
        "user-agent": "Storeloop/test",
        "accept": "application/json",
        "authorization": "Basic " + base64.b64encode("AC123:tök:en".encode()).decode(),
        "content-type": "application/x-www-form-urlencoded",
        "content-length": str(len(request.body)),
    }


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=5))
def test_form_encoding_is_urlencode(form: dict[str, str]) -> None:
    assert form_encode(form) == urlencode(form)


def test_form_values_that_are_not_strings_are_encoded_as_urlencode_does() -> None:
    assert form_encode({"Count": 5, "Flag": b"a b"}) == "Count=5&Flag=a+b"  # type: ignore[dict-item]


def test_form_encoding_of_an_sms_create() -> None:
    callback = "https://loop.example/webhooks/twilio/1/status?sl_key=9173fcf8-3160-48a8-9d51-4550bab96b3e"
    form = {"To": "+4915112304699", "Body": "Bob: 20% off, ça va?", "StatusCallback": callback}
    assert form_encode(form) == (
        "To=%2B4915112304699&Body=Bob%3A+20%25+off%2C+%C3%A7a+va%3F&StatusCallback=https%3A%2F%2Floop.example"
        "%2Fwebhooks%2Ftwilio%2F1%2Fstatus%3Fsl_key%3D9173fcf8-3160-48a8-9d51-4550bab96b3e"
    )


def test_query_params_and_per_request_headers(server: CannedServer, client: KeepAliveClient) -> None:
    client.request("GET", "/Messages.json", params={"To": "+14155552671", "PageSize": "50", "q": "a b&c"})
    client.request("POST", "/v21.0/123/messages", content=b'{"a":1}', headers={"Content-Type": "application/json"})
    client.request("POST", "/empty")
    first, second, third = server.requests
    assert first.target == "/Messages.json?To=%2B14155552671&PageSize=50&q=a+b%26c"
    assert "content-length" not in first.headers
    assert second.body == b'{"a":1}'
    assert (second.headers["content-type"], second.headers["content-length"]) == ("application/json", "7")
    assert (third.body, third.headers["content-length"]) == (b"", "0")  # a bodiless POST still says so
    assert "content-type" not in third.headers


def test_invalid_input_is_refused_before_connecting(server: CannedServer, client: KeepAliveClient) -> None:
    with pytest.raises(ValueError, match="not both"):
        client.request("POST", "/", data={"a": "1"}, content=b"a=1")
    with pytest.raises(ValueError, match="start with"):
        client.request("GET", "relative")
    with pytest.raises(ValueError, match="set by the client"):
        client.request("GET", "/", headers={"Host": "elsewhere"})
    with pytest.raises(ValueError, match="control characters") as info:
        client.request("GET", "/", headers={"X-Token": "secret\r\nInjected: 1"})
    assert "secret" not in str(info.value)
    with pytest.raises(ValueError, match="method"):
        client.request("GET /x", "/")
    with pytest.raises(ValueError, match="credentials"):
        KeepAliveClient("https://user:pw@api.test", timeout=1)
    with pytest.raises(ValueError, match="http"):
        KeepAliveClient("ftp://api.test", timeout=1)
    assert server.accepted == 0


def test_error_texts_carry_no_secret_query_or_body() -> None:
    hold = threading.Event()
    with (
        CannedServer(Answer(hold=hold)) as server,
        KeepAliveClient(server.url, auth=("user", "s3cret-token"), timeout=httpx.Timeout(5.0, read=0.1)) as client,
    ):
        with pytest.raises(httpx.ReadTimeout) as info:
            client.request("POST", "/send", params={"To": "+14155552671"}, data={"Body": "my code 123456"})
        hold.set()
    text = f"{info.value} {info.value!r}"
    assert text.count(f"POST {server.url}") == 2
    for secret in ("s3cret", base64.b64encode(b"user:s3cret-token").decode(), "4155552671", "123456", "/send"):
        assert secret not in text
    assert "s3cret" not in repr(client)


# --- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate() -> tuple[bytes, bytes]:
    return self_signed_cert()


def test_https_with_a_trusted_certificate_reuses_the_connection(certificate: tuple[bytes, bytes]) -> None:
    cert, key = certificate
    with (
        CannedServer(default=Answer(200, b"secure"), tls=server_context(cert, key)) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT, ssl_context=client_context(cert)) as client,
    ):
        assert [client.request("GET", "/").content for _ in range(3)] == [b"secure"] * 3
        assert server.accepted == 1
        assert server.requests[0].headers["host"] == f"localhost:{server.port}"


def test_https_refuses_a_certificate_the_system_store_does_not_trust(certificate: tuple[bytes, bytes]) -> None:
    cert, key = certificate
    with (
        CannedServer(default=Answer(200, b"secure"), tls=server_context(cert, key)) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT) as client,
    ):
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            client.request("POST", "/send", content=b"never sent")
        assert server.requests == []


# --- the header block, parsed here rather than by the email package ----------------------------------


def _raw_server(answer: bytes) -> tuple[str, threading.Thread, list[int]]:
    """A one-shot server: reads one request, writes ``answer`` byte for byte, then counts whether the
    client sent a second request on the same connection (it should not when told to close)."""
    listener = socket.create_server(("127.0.0.1", 0))
    more: list[int] = []

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            conn.sendall(answer)
            with contextlib.suppress(OSError):
                more.append(len(conn.recv(65536)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread, more


def test_interim_100_folded_lines_junk_lines_and_connection_close() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
        b"HTTP/1.1 201 Created\r\n"
        b"Content-Type: application/json\r\n"
        b"X-Folded: first\r\n \t second  \r\n"
        b"this line has no colon\r\n"
        b"X-Twice: a\r\nx-twice:b\r\n"
        b"X-Empty:\r\n"
        b"Connection: close\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    url, thread, more = _raw_server(answer)
    with KeepAliveClient(url, timeout=TIMEOUT) as client:
        response = client.request("GET", "/")
    thread.join(5)
    assert (response.status_code, response.content) == (201, b"{}")
    assert dict(response.headers.items()) == {
        "content-type": "application/json",
        "x-folded": "first second",
        "x-twice": "a, b",
        "x-empty": "",
        "connection": "close",
        "content-length": "2",
    }
    assert more == [0]  # the client closed the connection the server asked to close


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (b"".join(b"X-H%d: v\r\n" % n for n in range(99)), "HTTPException"),  # + Content-Length: 100
        (b"X-Long: " + b"v" * 65536 + b"\r\n", "LineTooLong"),
    ],
)
def test_oversized_header_blocks_are_protocol_errors(block: bytes, error: str) -> None:
    url, thread, _ = _raw_server(b"HTTP/1.1 200 OK\r\n" + block + b"Content-Length: 0\r\n\r\n")
    with KeepAliveClient(url, timeout=TIMEOUT) as client, pytest.raises(httpx.RemoteProtocolError, match=error):
        client.request("GET", "/")
    thread.join(5)


def test_http_1_0_answer_without_keep_alive_closes_the_connection() -> None:
    url, thread, more = _raw_server(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    with KeepAliveClient(url, timeout=TIMEOUT) as client:
        assert client.request("GET", "/").content == b"ok"
    thread.join(5)
    assert more == [0]


# --- proxies ---------------------------------------------------------------------------------------


class LoopbackProxy:
    """An http:// proxy on loopback: ``CONNECT`` opens a tunnel, an absolute-form request is passed
    on to the origin it names; either way the bytes are then piped both ways. Records each request
    head it read; with ``credentials`` it answers 407 unless they come in ``Proxy-Authorization``."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.heads: list[tuple[str, dict[str, str]]] = []  # (request line, lower-cased headers)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> LoopbackProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head = data.partition(b"\r\n\r\n")[0]
            line, *fields = head.decode("latin-1").split("\r\n")
            headers = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
            self.heads.append((line, headers))
            wanted = f"Basic {base64.b64encode(self.credentials.encode()).decode()}" if self.credentials else None
            if wanted is not None and headers.get("proxy-authorization") != wanted:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                return
            method, target, _ = line.split(" ")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host, int(port)))
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # absolute form: http://host:port/path
                authority = target.split("/")[2]
                host, _, port = authority.rpartition(":")
                upstream = socket.create_connection((host, int(port or 80)))
                upstream.sendall(data)
            with upstream:
                _pipe(conn, upstream)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 5)
        if not readable:
            return
        for sock in readable:
            chunk = sock.recv(65536)
            if not chunk:
                return
            peers[sock].sendall(chunk)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_https_goes_through_a_proxy_tunnel_with_tls_to_the_origin(
    certificate: tuple[bytes, bytes], no_proxy_env: pytest.MonkeyPatch
) -> None:
    """One CONNECT per connection, with the proxy's credentials; the origin's certificate is checked
    through the tunnel and the origin never sees the proxy's credentials."""
    cert, key = certificate
    with (
        LoopbackProxy(credentials="squid:p@ss") as proxy,
        CannedServer(default=Answer(200, b"secure"), tls=server_context(cert, key)) as server,
        KeepAliveClient(
            server.url,
            timeout=TIMEOUT,
            ssl_context=client_context(cert),
            proxy=f"http://squid:p%40ss@127.0.0.1:{proxy.port}",
        ) as client,  # fmt: skip
    ):
        assert [client.request("POST", "/send", data={"n": str(n)}).content for n in range(3)] == [b"secure"] * 3
        # http.client writes "HTTP/1.0" on Python 3.11, "HTTP/1.1" from 3.12; proxies take both.
        assert [line.rpartition(" ")[0] for line, _ in proxy.heads] == [f"CONNECT localhost:{server.port}"]
        assert proxy.heads[0][1]["proxy-authorization"] == "Basic " + base64.b64encode(b"squid:p@ss").decode()
        assert (server.accepted, [r.target for r in server.requests]) == (1, ["/send"] * 3)
        assert all("proxy-authorization" not in r.headers for r in server.requests)
        assert "p@ss" not in repr(client)
        assert "squid" not in repr(client)


def test_https_through_a_proxy_still_refuses_an_untrusted_certificate(
    certificate: tuple[bytes, bytes], no_proxy_env: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    with (
        LoopbackProxy() as proxy,
        CannedServer(default=Answer(200, b"secure"), tls=server_context(cert, key)) as server,
        KeepAliveClient(server.url, timeout=TIMEOUT, proxy=proxy.url) as client,
    ):
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            client.request("POST", "/send", content=b"never sent")
        assert server.requests == []


def test_the_environment_names_the_proxy_and_no_proxy_skips_it(
    server: CannedServer, no_proxy_env: pytest.MonkeyPatch
) -> None:
    with LoopbackProxy() as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        with KeepAliveClient(server.url, timeout=TIMEOUT) as client:  # http origin: absolute form
            assert client.request("GET", "/orders", params={"page": "2"}).content == b"ok"
        assert [line for line, _ in proxy.heads] == [f"GET {server.url}/orders?page=2 HTTP/1.1"]
        assert server.requests[-1].target == f"{server.url}/orders?page=2"
        no_proxy_env.setenv("NO_PROXY", "example.com, 127.0.0.0/8")
        with KeepAliveClient(server.url, timeout=TIMEOUT) as client:
            assert client.request("GET", "/direct").content == b"ok"
        with KeepAliveClient(server.url, timeout=TIMEOUT, trust_env=False) as client:
            no_proxy_env.delenv("NO_PROXY")
            assert client.request("GET", "/direct-too").content == b"ok"
        assert len(proxy.heads) == 1
        assert [r.target for r in server.requests[-2:]] == ["/direct", "/direct-too"]


def test_a_proxy_that_refuses_is_a_connect_error_naming_its_answer(no_proxy_env: pytest.MonkeyPatch) -> None:
    with (
        LoopbackProxy(credentials="squid:right") as proxy,
        KeepAliveClient(
            "https://api.twilio.example", timeout=TIMEOUT, proxy=f"http://squid:wrong@127.0.0.1:{proxy.port}"
        ) as client,  # fmt: skip
        pytest.raises(httpx.ConnectError) as info,
    ):
        client.request("POST", "/send", content=b"never sent")
    assert str(info.value) == (
        "cannot connect to https://api.twilio.example (Tunnel connection failed: 407 Proxy Authentication Required)"
    )
    assert [line.rpartition(" ")[0] for line, _ in proxy.heads] == ["CONNECT api.twilio.example:443"]


@pytest.mark.parametrize("proxy", ["https://proxy.example:3128", "socks5://127.0.0.1:1080", "http://"])
def test_only_http_proxies_are_taken(proxy: str) -> None:
    with pytest.raises(ValueError, match="proxy must be an http:// URL"):
        KeepAliveClient("https://api.twilio.example", timeout=TIMEOUT, proxy=proxy)


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("api.twilio.com", "twilio.com", True),
        ("api.twilio.com", ".twilio.com", True),
        ("twilio.com", ".twilio.com", True),
        ("nottwilio.com", "twilio.com", False),
        ("api.twilio.com", "graph.facebook.com, *", True),
        ("api.twilio.com", "api.twilio.com:443", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("::1", "[::1]", True),
        ("api.twilio.com", "", False),
    ],
)
def test_no_proxy_is_read_as_curl_reads_it(host: str, no_proxy: str, bypassed: bool) -> None:
    assert _bypassed(host, no_proxy) is bypassed
