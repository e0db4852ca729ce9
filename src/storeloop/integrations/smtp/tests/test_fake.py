"""The fake relay itself: counting, waiting, the runnable module."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time

import pytest

from storeloop.integrations.smtp.client import SmtpSender
from storeloop.integrations.smtp.fake import FakeSmtpServer

from .conftest import config_for, make_spec


def test_the_startup_probe_is_not_counted(fake: FakeSmtpServer) -> None:
    assert fake.port > 0
    assert fake.connections == 0
    assert fake.messages == []


def test_wait_for_messages_uses_a_deadline(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    sender.send(make_spec())
    assert len(fake.wait_for_messages(1, timeout=1.0)) == 1
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        fake.wait_for_messages(2, timeout=0.05)
    assert time.monotonic() - started < 1.0


def test_clear_and_sessions(fake: FakeSmtpServer) -> None:
    with SmtpSender(config_for(fake)) as first, SmtpSender(config_for(fake)) as second:
        first.send(make_spec(1))
        second.send(make_spec(2))
        first.send(make_spec(3))
    assert [m.session_id for m in fake.messages] == [1, 2, 1]
    assert fake.connections == 2
    fake.clear()
    assert fake.messages == []
    assert fake.connections == 0


def test_plain_smtplib_client_works(fake: FakeSmtpServer) -> None:
    with smtplib.SMTP(fake.host, fake.port, local_hostname="t.test", timeout=5) as client:
        refused = client.sendmail(
            "a@shop.example", ["b@example.com"], b"Subject: hi\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n"
        )
    assert refused == {}
    assert fake.count_by_message_id() == {"<x@y>": 1}


def test_client_ssl_context_needs_tls(fake: FakeSmtpServer) -> None:
    with pytest.raises(RuntimeError):
        fake.client_ssl_context()


@pytest.mark.slow
def test_module_runs_the_fake_and_prints_its_address() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([p for p in sys.path if p])}
    with subprocess.Popen(
        [sys.executable, "-m", "storeloop.integrations.smtp", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            assert info["host"] == "127.0.0.1"
            assert info["port"] > 0
            with smtplib.SMTP(info["host"], info["port"], local_hostname="t.test", timeout=5) as client:
                assert client.noop()[0] == 250
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
