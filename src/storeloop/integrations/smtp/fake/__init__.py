"""A fake SMTP relay on loopback (aiosmtpd) for tests, benchmarks and the demo.

Run standalone: ``python -m storeloop.integrations.smtp --port 8025``.
"""

from .dsn import make_arf, make_dsn
from .server import FakeSmtpServer, ReceivedMessage

__all__ = ["FakeSmtpServer", "ReceivedMessage", "make_arf", "make_dsn"]
