"""Identity normalisation: one canonical form per email and phone, so equal people compare equal."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

MIN_NATIONAL_DIGITS = 6
# Plain ASCII addresses (nearly all of a shop's) normalise to themselves lower-cased; only those
# skip email-validator, whose full check costs ~0.2 ms. The property test keeps both paths equal.
_SIMPLE_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}"
)
_SPECIAL_USE_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test", "home", "lan"})


@lru_cache(maxsize=65536)  # pure, and the same customers recur across a shop's orders
def normalize_email(raw: str | None) -> str | None:
    """Lower-cased, trimmed, syntax-checked address; ``None`` when empty or invalid.

    email-validator NFC-normalises both parts; the local part is lower-cased too, since
    shops treat ``John@x`` and ``john@x`` as one customer and mail servers in practice agree.
    """
    if not raw or not raw.strip():
        return None
    candidate = raw.strip().lower()
    if (
        len(candidate) <= 254
        and _SIMPLE_EMAIL.fullmatch(candidate)
        and len(candidate.partition("@")[0]) <= 64
        and candidate.rpartition(".")[2] not in _SPECIAL_USE_TLDS
    ):
        return candidate
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return result.normalized.lower()


@lru_cache(maxsize=65536)
def normalize_phone(raw: str | None, region: str | None = None) -> str | None:
    """E.164 form, reading national numbers in the billing country; ``None`` when not a number."""
    if not raw or not raw.strip():
        return None
    candidate = raw.strip()
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        parsed = phonenumbers.parse(candidate, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    # "Possible" (right length for the country) rather than "valid": shops hold test and new-range
    # numbers that libphonenumber's allocation tables reject. Very short ones are never numbers.
    if not phonenumbers.is_possible_number(parsed) or len(str(parsed.national_number)) < MIN_NATIONAL_DIGITS:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
