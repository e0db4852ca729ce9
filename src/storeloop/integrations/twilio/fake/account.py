"""``FakeTwilio``: one in-memory Twilio account served over real HTTP on loopback.

    with FakeTwilio(rate_limit_per_second=10) as twilio:
        client = TwilioClient(twilio.account_sid, twilio.auth_token, base_url=twilio.url,
                              from_number=twilio.from_number)
        client.send_sms("+14155552671", "Hi")
        twilio.flush()  # status callbacks delivered
        assert twilio.sent_count("+14155552671") == 1

Behaviour (see ``server.py`` for HTTP): Basic auth (20003), validation (in this order: 21604,
21603, 21705/21606, 21602, 21617, 21211, 21614, 21610), a token-bucket rate limit (429 / 20429),
faults, and each accepted message's life: ``queued`` (``accepted`` then ``queued`` with a
Messaging Service), ``sent``, ``delivered`` (or ``undelivered`` 30003 for numbers in
``fail_delivery``, ``failed`` 30008 for ``fail_sending``). Status callbacks go out for every change
but the initial status, as Twilio documents. Inbound STOP/START update ``opted_out`` as Twilio's
own filtering does.
"""

from __future__ import annotations

import functools
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..models import classify_keyword
from ..segments import MAX_BODY_CHARS, count_segments
from .callbacks import CallbackRecord, WebhookSender
from .records import API, ApiError, FakeMessage, Faults, Numbers, RequestRecord, rfc2822

DEFAULT_ACCOUNT_SID = "AC" + "f" * 32
DEFAULT_SERVICE_SID = "MG" + "e" * 32
DEFAULT_FROM = "+15005550006"  # Twilio's magic "valid" test number
_E164 = re.compile(r"\+[1-9]\d{6,14}")
PRICE_PER_SEGMENT = "0.00790"


class FakeTwilio:
    """A deterministic fake Twilio account. ``start()`` serves it on loopback; ``url`` is the base URL."""

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = "token",  # noqa: S107 - the fake account's well-known test token
        rate_limit_per_second: float | None = None,
        seed: int = 1,
        from_number: str = DEFAULT_FROM,
        messaging_service_sid: str = DEFAULT_SERVICE_SID,
        advanced_opt_out: bool = False,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.rate_limit_per_second = rate_limit_per_second
        self.seed = seed
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.advanced_opt_out = advanced_opt_out  # inbound webhooks carry OptOutType
        self.account_status = "active"
        self.faults = Faults()
        self.numbers = Numbers()
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed * 7919 + 1)
        self._messages: dict[str, FakeMessage] = {}
        self._inbound: list[dict[str, str]] = []
        self._requests: list[RequestRecord] = []
        self._callbacks: list[CallbackRecord] = []
        self._tokens = max(1.0, rate_limit_per_second or 1.0)
        self._refilled = time.monotonic()
        self._webhooks: WebhookSender | None = None
        self._server: Any = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeTwilio:
        from .server import FakeServer  # local import: the server depends on this module

        if self._server is None:
            self._webhooks = WebhookSender(lambda: self.auth_token, self._record_callback)
            self._server = FakeServer(self, host, port)
            self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._webhooks is not None:
            self._webhooks.stop()
            self._webhooks = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeTwilio is not started")
        return str(self._server.url)

    def reset(self) -> None:
        """Forget messages, requests, callbacks, number sets and faults."""
        if self._webhooks is not None:
            self._webhooks.clear()
        with self.lock:
            self._messages.clear()
            self._inbound.clear()
            self._requests.clear()
            self._callbacks.clear()
            self.faults = Faults()
            self.numbers = Numbers()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every scheduled status step and callback is done; False on timeout."""
        return self._webhooks.idle(timeout) if self._webhooks is not None else True

    # --- per-number behaviour (live sets; also ``POST /__fake__/numbers``) ----------------------------

    @property
    def opted_out(self) -> set[str]:
        """Numbers that replied STOP: sends answer 21610 (``simulate_inbound`` STOP/START update it)."""
        return self.numbers.opted_out

    @property
    def landlines(self) -> set[str]:
        """Sends answer 21614 (not a mobile number)."""
        return self.numbers.landlines

    @property
    def fail_delivery(self) -> set[str]:
        """Accepted and sent, then ``undelivered`` with ErrorCode 30003."""
        return self.numbers.fail_delivery

    @property
    def fail_sending(self) -> set[str]:
        """Accepted, then ``failed`` with ErrorCode 30008 (never sent)."""
        return self.numbers.fail_sending

    # --- inspection --------------------------------------------------------------------------------

    @property
    def messages(self) -> list[FakeMessage]:
        """Outbound messages Twilio accepted, oldest first (copies)."""
        with self.lock:
            return [replace(m) for m in self._messages.values()]

    def message(self, sid: str) -> FakeMessage | None:
        with self.lock:
            found = self._messages.get(sid)
            return replace(found) if found is not None else None

    def sent_count(self, to: str) -> int:
        with self.lock:
            return sum(1 for m in self._messages.values() if m.to == to)

    def duplicates(self) -> list[list[str]]:
        """Groups of message SIDs with the same recipient and body: the same text sent twice.

        Twilio takes no idempotency key, so content is what a duplicate looks like to the recipient.
        """
        groups: dict[tuple[str, str], list[str]] = {}
        with self.lock:
            for m in self._messages.values():
                groups.setdefault((m.to, m.body), []).append(m.sid)
        return [sids for sids in groups.values() if len(sids) > 1]

    @property
    def inbound(self) -> list[dict[str, str]]:
        with self.lock:
            return [dict(p) for p in self._inbound]

    @property
    def requests(self) -> list[RequestRecord]:
        with self.lock:
            return list(self._requests)

    @property
    def callbacks(self) -> list[CallbackRecord]:
        with self.lock:
            return list(self._callbacks)

    def clear_requests(self) -> None:
        with self.lock:
            self._requests.clear()

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "messages": len(self._messages),
                "inbound": len(self._inbound),
                "requests": len(self._requests),
                "callbacks": len(self._callbacks),
                "count_429": sum(1 for r in self._requests if r.status == 429),
                "duplicates": len(self.duplicates()),
                "opted_out": sorted(self.numbers.opted_out),
                "faults": self.faults.as_dict(),
            }

    # --- used by the server ------------------------------------------------------------------------

    def log_request(self, record: RequestRecord) -> None:
        with self.lock:
            self._requests.append(record)

    def _record_callback(self, record: CallbackRecord) -> None:
        with self.lock:
            self._callbacks.append(record)

    def sid(self, prefix: str) -> str:
        with self.lock:
            return prefix + f"{self._rng.getrandbits(128):032x}"

    def admit(self) -> float | None:
        """Take one token of the rate limit: None if allowed now, else seconds until a token is free."""
        rate = self.rate_limit_per_second
        if not rate:
            return None
        with self.lock:
            now = time.monotonic()
            self._tokens = min(max(1.0, rate), self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return (1.0 - self._tokens) / rate

    def roll_fault(self) -> tuple[int, int | None] | None:
        """``(status, code)`` an API request should fail with now, or None for a normal answer."""
        faults = self.faults
        with self.lock:
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return faults.fail_next_status, faults.fail_next_code or None
            if faults.error_rate and self._fault_rng.random() < faults.error_rate:
                return self._fault_rng.choice((500, 502, 503, 504)), None
        return None

    def take_drop(self) -> bool:
        with self.lock:
            if self.faults.accept_then_drop > 0:
                self.faults.accept_then_drop -= 1
                return True
            return False

    def account_json(self) -> dict[str, Any]:
        created = rfc2822(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
        uri = f"{API}/Accounts/{self.account_sid}"
        return {
            "auth_token": None,
            "date_created": created,
            "date_updated": created,
            "friendly_name": "Storeloop fake account",
            "owner_account_sid": self.account_sid,
            "sid": self.account_sid,
            "status": self.account_status,
            "subresource_uris": {"messages": f"{uri}/Messages.json"},
            "type": "Full",
            "uri": f"{uri}.json",
        }

    def create_message(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Validate and store a message, schedule its life; raise ``ApiError`` like Twilio."""
        to, body = form.get("To", ""), form.get("Body", "")
        service, sender = form.get("MessagingServiceSid"), form.get("From")
        if not to:
            raise ApiError(400, 21604, "A 'To' phone number is required.")
        if not service and not sender:
            raise ApiError(400, 21603, "A 'From' phone number is required.")
        if service and service != self.messaging_service_sid:
            raise ApiError(400, 21705, f"The Messaging Service Sid {service} is invalid.")
        if not service and sender != self.from_number:
            raise ApiError(
                400, 21606, f"The From phone number {sender} is not a valid, SMS-capable inbound phone number."
            )
        if not body:
            raise ApiError(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise ApiError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        numbers = self.numbers
        if not _E164.fullmatch(to) or to in numbers.invalid:
            raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if to in numbers.landlines:
            raise ApiError(400, 21614, f"'To' number {to} is not a valid mobile number")
        if to in numbers.opted_out:
            raise ApiError(400, 21610, "Attempt to send to unsubscribed recipient")
        now = datetime.now(UTC)
        message = FakeMessage(
            sid=self.sid("SM"),
            to=to,
            from_=None if service else sender,
            body=body,
            status="accepted" if service else "queued",
            messaging_service_sid=service,
            status_callback=form.get("StatusCallback") or None,
            num_segments=0 if service else count_segments(body).segments,
            date_created=now,
            date_updated=now,
        )
        with self.lock:
            self._messages[message.sid] = message
            payload = message.as_json(self.account_sid)
        self._schedule_life(message.sid)
        return payload

    def _schedule_life(self, sid: str) -> None:
        steps: list[tuple[str, int | None]] = []
        with self.lock:
            message = self._messages[sid]
            if message.messaging_service_sid:
                steps.append(("queued", None))
            if message.to in self.numbers.fail_sending:
                steps.append(("failed", 30008))
            elif message.to in self.numbers.fail_delivery:
                steps += [("sent", None), ("undelivered", 30003)]
            else:
                steps += [("sent", None), ("delivered", None)]
            delay = self.faults.callback_delay_ms / 1000
        webhooks = self._webhooks
        if webhooks is None:
            return
        for index, (status, code) in enumerate(steps, start=1):
            webhooks.schedule(delay * index, functools.partial(self._advance, sid, status, code))

    def _advance(self, sid: str, status: str, error_code: int | None) -> None:
        """Apply one status step (on the webhook thread) and post its callback."""
        with self.lock:
            message = self._messages.get(sid)
            if message is None:  # reset meanwhile
                return
            now = datetime.now(UTC)
            message.status, message.date_updated = status, now
            if status == "queued" and message.messaging_service_sid:
                message.from_ = self.from_number  # the service picked a sender
                message.num_segments = count_segments(message.body).segments
            if status == "sent":
                message.date_sent = now
                message.price = f"-{float(PRICE_PER_SEGMENT) * message.num_segments:.5f}"
            if error_code is not None:
                message.error_code = error_code
                message.error_message = {30003: "Unreachable destination handset", 30008: "Unknown error"}[error_code]
            url = message.status_callback
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "From": message.from_ or "",
                "To": message.to,
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
            }
            if message.messaging_service_sid:
                params["MessagingServiceSid"] = message.messaging_service_sid
            if error_code is not None:
                params["ErrorCode"] = str(error_code)
            if status in ("delivered", "undelivered"):
                params["RawDlrDoneDate"] = now.strftime("%y%m%d%H%M")
            token = self.sid("")
        if url and self._webhooks is not None:
            self._webhooks.post("status", url, params, token)

    def simulate_inbound(
        self, from_: str, body: str, to_url: str, *, to: str | None = None, messaging_service: bool = False
    ) -> CallbackRecord:
        """An SMS from ``from_`` to our number: apply Twilio's STOP/START filtering, POST the signed webhook."""
        keyword = classify_keyword(body)
        with self.lock:
            if keyword == "stop":
                self.numbers.opted_out.add(from_)
            elif keyword == "start":
                self.numbers.opted_out.discard(from_)
            sid = self.sid("SM")
            params = {
                "ToCountry": "US",
                "ToState": "",
                "SmsMessageSid": sid,
                "NumMedia": "0",
                "ToCity": "",
                "FromZip": "",
                "SmsSid": sid,
                "FromState": "",
                "SmsStatus": "received",
                "FromCity": "",
                "Body": body,
                "FromCountry": "",
                "To": to or self.from_number,
                "ToZip": "",
                "NumSegments": str(max(1, count_segments(body).segments)),
                "MessageSid": sid,
                "AccountSid": self.account_sid,
                "From": from_,
                "ApiVersion": "2010-04-01",
            }
            if messaging_service:
                params["MessagingServiceSid"] = self.messaging_service_sid
            if self.advanced_opt_out and keyword is not None:
                params["OptOutType"] = keyword.upper()
            self._inbound.append(dict(params))
            token = self.sid("")
        if self._webhooks is None:
            raise RuntimeError("FakeTwilio is not started")
        return self._webhooks.post("inbound", to_url, params, token)
