from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storeloop.integrations.smtp.client import SmtpConfig, SmtpSender
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.integrations.smtp.message import EmailMessageSpec


class RecordingLimiter:
    """A ``RateLimiter`` that grants everything and records what it was told."""

    def __init__(self) -> None:
        self.acquired = 0
        self.penalties: list[float] = []

    def acquire(self, cost: int = 1) -> None:
        self.acquired += cost

    def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)


def make_spec(n: int = 1, **overrides: Any) -> EmailMessageSpec:
    fields: dict[str, Any] = {
        "from_addr": "shop@shop.example",
        "from_name": "Test Shop",
        "to_addr": f"customer{n}@example.com",
        "subject": f"Order {n} shipped",
        "text": f"Hello,\nyour order {n} is on its way.\n",
        "html": f"<p>Hello, your order {n} is on its way.</p>",
        "message_id_local": f"msg_{n:04d}",
    }
    fields.update(overrides)
    return EmailMessageSpec(**fields)


@pytest.fixture
def spec() -> Callable[..., EmailMessageSpec]:
    return make_spec


@pytest.fixture
def fake() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


def config_for(server: FakeSmtpServer, **overrides: Any) -> SmtpConfig:
    fields: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "security": "none",
        "timeout": 5.0,
        "local_hostname": "worker.storeloop.test",
    }
    if server.starttls or server.tls:
        fields["security"] = "starttls" if server.starttls else "tls"
        fields["ssl_context"] = server.client_ssl_context()
    fields.update(overrides)
    return SmtpConfig(**fields)


@pytest.fixture
def sender(fake: FakeSmtpServer, limiter: RecordingLimiter) -> Iterator[SmtpSender]:
    with SmtpSender(config_for(fake), limiter=limiter) as s:
        yield s
