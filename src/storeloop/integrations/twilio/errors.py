"""Errors raised by the Twilio adapter, each on one side of the core retry axis.

Twilio answers REST failures with ``{"code": 21211, "message": "...", "more_info":
"https://www.twilio.com/docs/errors/21211", "status": 400}`` (401s add ``"detail"``). The Twilio
error ``code`` decides the class, the HTTP status only when the code is unknown:

==========================  =======  ====================================  =========  ===========
class                       HTTP     Twilio codes                          axis       scope
==========================  =======  ====================================  =========  ===========
TwilioRateLimited           429      20429                                 transient  account
TwilioTransientError        5xx/408  any; timeouts, connection errors      transient  message
TwilioAuthError             401/403  20003 (bad credentials), 20005        terminal   account
TwilioPermissionError       400/403  21408, 21606, 21608, 21705            terminal   account
TwilioInvalidNumber         400      21211, 21604, 21217                   terminal   recipient
TwilioNotMobile             400      21614, 21635 (landline)               terminal   recipient
TwilioUnreachable           400      21612                                 terminal   recipient
TwilioRecipientOptedOut     400      21610 (replied STOP)                  terminal   recipient
TwilioNotFound              404      20404                                 terminal   message
TwilioValidationError       400/4xx  anything else (21602 empty body, ...) terminal   message
==========================  =======  ====================================  =========  ===========

``scope`` tells the dispatcher what a failure says: about this message only, about the recipient
(stop sending to this number; 21610 also records a withdrawal of consent) or about the account
(credentials or sender set-up: pause the channel, tell the shop owner).

Twilio's messages quote phone numbers back ("Invalid 'To' Phone Number: +1555..."); they are
scrubbed to ``<phone>`` before being kept, logged or raised.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

from storeloop.core.errors import TerminalError, TransientError

Scope = Literal["message", "recipient", "account"]

# "+1 (415) 555-2671", "+14155552671", or 7+ bare digits; not dates such as 2010-04-01 in API paths.
_PHONE = re.compile(r"\+\d[\d\s().-]{5,}\d|(?<![\w-])\d{7,}(?![\w-])")
MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


def scrub(text: str) -> str:
    """Replace phone numbers (personal data) in a provider message with ``<phone>``."""
    return _PHONE.sub("<phone>", text)


class TwilioError(Exception):
    """Base class: ``status`` (HTTP, None without a response), Twilio ``code``, ``message``, ``more_info``."""

    scope: Scope = "message"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        more_info: str | None = None,
    ) -> None:
        message = scrub(message)
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.code = code
        self.more_info = more_info or (MORE_INFO.format(code=code) if code else None)

    def __str__(self) -> str:
        parts = [self.message]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        return " ".join(parts)


class TwilioTerminalError(TwilioError, TerminalError):
    """A Twilio failure that retrying will not fix."""


class TwilioAuthError(TwilioTerminalError):
    """20003: wrong Account SID / auth token (or API key); 20005: account not active."""

    scope: Scope = "account"


class TwilioPermissionError(TwilioTerminalError):
    """The account may not send this: 21408 region not enabled (Geo Permissions), 21606 'From' is not an
    SMS-capable number of this account, 21608 trial account and unverified 'To', 21705 bad Messaging
    Service. Nothing changes until someone fixes the Twilio console set-up."""

    scope: Scope = "account"


class TwilioRecipientError(TwilioTerminalError):
    """Something about the recipient: do not try this number again with any body."""

    scope: Scope = "recipient"


class TwilioInvalidNumber(TwilioRecipientError):
    """21211: the 'To' number is not a valid phone number (also raised locally before any request)."""


class TwilioNotMobile(TwilioRecipientError):
    """21614: 'To' is not a mobile number (21635: a landline): it cannot receive SMS."""


class TwilioUnreachable(TwilioRecipientError):
    """21612: Twilio cannot route to this number from this sender."""


class TwilioRecipientOptedOut(TwilioRecipientError):
    """21610: the recipient replied STOP (or another opt-out keyword) to this sender.

    Twilio will refuse every message from this sender (or Messaging Service) until they reply START.
    The caller records a withdrawal of SMS consent for the number.
    """


class TwilioNotFound(TwilioTerminalError):
    """20404: no such message (or account) for these credentials."""


class TwilioValidationError(TwilioTerminalError):
    """Any other rejected request (400-class): empty body (21602), body over 1600 characters (21617)..."""


class TwilioTransientError(TwilioError, TransientError):
    """5xx, 408, timeouts and connection errors. ``retry_after`` is a hint in seconds.

    ``maybe_sent`` is True when Twilio may have accepted the message although we got no answer (read
    timeout, connection dropped after the request went out, 5xx on a send). Twilio's Messages API
    takes no idempotency key, so such a send must not be repeated blindly: the dispatcher records it
    ``unknown``; the status callback carrying our key settles it, or ``messaging.settlement`` looks
    it up later (``TwilioClient.find_messages``) and queues it again if Twilio never took it.
    False means the request surely never reached Twilio or was refused unprocessed (429).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        more_info: str | None = None,
        retry_after: float | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message, status=status, code=code, more_info=more_info)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class TwilioRateLimited(TwilioTransientError):
    """429 / 20429 (too many concurrent requests), still answered after the client's retries.

    Twilio documents that a request answered 429 was never processed: it is always safe to retry.
    """

    scope: Scope = "account"

    def __init__(self, message: str, *, code: int | None = 20429, retry_after: float | None = None) -> None:
        super().__init__(message, status=429, code=code, retry_after=retry_after, maybe_sent=False)


_BY_CODE: dict[int, type[TwilioTerminalError]] = {
    20003: TwilioAuthError,
    20005: TwilioAuthError,
    20404: TwilioNotFound,
    21211: TwilioInvalidNumber,
    21217: TwilioInvalidNumber,  # phone number does not appear to be valid
    21604: TwilioInvalidNumber,  # 'To' is required
    21614: TwilioNotMobile,
    21635: TwilioNotMobile,
    21612: TwilioUnreachable,
    21610: TwilioRecipientOptedOut,
    21408: TwilioPermissionError,
    21606: TwilioPermissionError,
    21608: TwilioPermissionError,
    21705: TwilioPermissionError,
}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _code(body: Mapping[str, Any]) -> int | None:
    value = body.get("code")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def error_from_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None, *, maybe_sent: bool = False
) -> TwilioError:
    """Map an HTTP error status and its decoded body (possibly None/non-JSON) onto the tree.

    ``maybe_sent`` is what a 5xx means for this request: True for a send (Twilio may have accepted
    the message before failing), False for a read.
    """
    headers = headers or {}
    body: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    code = _code(body)
    text = body.get("message")
    message = text if isinstance(text, str) and text else f"Twilio answered HTTP {status}"
    detail = body.get("detail")
    if isinstance(detail, str) and detail and detail not in message:
        message = f"{message}: {detail}"  # 401: "Authenticate: Your AccountSid or AuthToken was incorrect."
    info = body.get("more_info")
    more_info = info if isinstance(info, str) else None
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429 or code == 20429:
        return TwilioRateLimited(message, code=code or 20429, retry_after=retry_after)
    if status == 408 or status >= 500:
        return TwilioTransientError(
            message, status=status, code=code, more_info=more_info, retry_after=retry_after, maybe_sent=maybe_sent
        )
    cls = _BY_CODE.get(code) if code is not None else None
    if cls is None:
        cls = {401: TwilioAuthError, 403: TwilioPermissionError, 404: TwilioNotFound}.get(status, TwilioValidationError)
    return cls(message, status=status, code=code, more_info=more_info)
