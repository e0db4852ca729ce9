"""What libphonenumber says about a number, worked out once per number for every check that asks.

Sending a marketing SMS asks twice about the same number: its time zone (quiet hours, while the
batch is prepared) and its validity (the SMS channel, just before the request). Each needs the
parsed number (~20 µs) and its type (~15 µs: matching the national number against the country's
patterns; ``is_valid_number`` is exactly "the type is not UNKNOWN"). Cached here, the second
question costs a dictionary lookup. ``PhoneNumber`` objects are shared: callers must not change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType

# More than the numbers of two dispatch batches in flight, so a batch's second question is a hit.
_CACHED_NUMBERS = 8192


@dataclass(frozen=True, slots=True)
class PhoneFacts:
    parsed: PhoneNumber | None  # None: libphonenumber cannot parse it (see ``error``)
    number_type: int  # a ``PhoneNumberType``; UNKNOWN for numbers that are not valid
    error: str = ""  # libphonenumber's reason when it cannot parse

    @property
    def valid(self) -> bool:
        """``phonenumbers.is_valid_number``."""
        return self.parsed is not None and self.number_type != PhoneNumberType.UNKNOWN


@lru_cache(maxsize=_CACHED_NUMBERS)
def phone_facts(number: str) -> PhoneFacts:
    """``phonenumbers.parse(number, None)`` (international form: "+" and the country code) and the
    number's type."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        return PhoneFacts(None, PhoneNumberType.UNKNOWN, error=str(exc._msg))
    return PhoneFacts(parsed, phonenumbers.number_type(parsed))
