"""A fake Twilio account speaking the Programmable Messaging REST API over real HTTP on loopback.

    with FakeTwilio(rate_limit_per_second=10) as twilio:
        client = TwilioClient(twilio.account_sid, twilio.auth_token, base_url=twilio.url,
                              from_number=twilio.from_number)
        ...

Status callbacks and inbound messages are real, signed HTTP POSTs to the URLs given.
Run standalone: ``python -m storeloop.integrations.twilio.fake --port 8300``.
"""

from .account import DEFAULT_ACCOUNT_SID, DEFAULT_FROM, DEFAULT_SERVICE_SID, FakeTwilio
from .callbacks import CallbackRecord
from .records import FakeMessage, Faults, Numbers, RequestRecord

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_FROM",
    "DEFAULT_SERVICE_SID",
    "CallbackRecord",
    "FakeMessage",
    "FakeTwilio",
    "Faults",
    "Numbers",
    "RequestRecord",
]
