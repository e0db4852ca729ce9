"""SMS segment counting (GSM-7 vs UCS-2) and E.164 phone number validation.

Encoding (3GPP TS 23.038): a body made only of characters of the GSM 03.38 default alphabet and its
extension table is sent as GSM-7; one character outside it (an emoji, a curly quote ``’``, a Polish
``ł``) switches the *whole* message to UCS-2 (UTF-16), which more than halves the room per segment.

Sizes: one SMS carries 140 octets. GSM-7 fits 160 septets; UCS-2 fits 70 UTF-16 code units. A
longer message is split and every part carries a 6-octet User Data Header, leaving 153 septets or
67 code units per segment. Extension characters (``^ { } \\ [ ~ ] | €`` and form feed) are sent as
ESC + character: two septets each. Characters outside the Basic Multilingual Plane (most emoji) are
UTF-16 surrogate pairs: two code units.

Splitting follows Twilio's own segment calculator (TwilioDevEd/message-segment-calculator): an
escape pair, a surrogate pair and a user-perceived character (emoji with skin tone or ZWJ sequence,
flag, letter + combining accent) are never cut across two segments, so a long message can need one
segment more than ``ceil(units / 153)``. Twilio's ``num_segments`` on the sent message is what is
billed; this count is the estimate shown before sending. Twilio's optional "Smart Encoding"
(replacing ``’`` by ``'`` and so on) is not emulated: Storeloop does not turn it on.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from storeloop.core.phones import phone_facts

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet, as Unicode (ESC, 0x1B, is not a character of its own).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each is sent as ESC + code, i.e. two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160  # septets in a one-part message
GSM7_MULTI = 153  # septets per part once a User Data Header is needed
UCS2_SINGLE = 70  # UTF-16 code units in a one-part message
UCS2_MULTI = 67
MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies (error 21617)


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How a body will be sent.

    ``characters`` counts Unicode code points (what a person typed, roughly); ``units`` counts what
    is billed: septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2 (most
    emoji count 2). ``non_gsm`` lists the distinct characters that forced UCS-2, in order of
    appearance, so a UI can say "’ makes this message Unicode".
    """

    encoding: Encoding
    characters: int
    units: int
    segments: int
    non_gsm: tuple[str, ...] = ()

    @property
    def per_segment(self) -> int:
        """Units each segment can carry for this body's encoding and length."""
        if self.encoding == "GSM-7":
            return GSM7_SINGLE if self.segments <= 1 else GSM7_MULTI
        return UCS2_SINGLE if self.segments <= 1 else UCS2_MULTI


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM 03.38 alphabet or its extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _septets(ch: str) -> int:
    return 2 if ch in GSM7_EXTENSION else 1


def _utf16_units(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _joins_previous(ch: str, previous: str) -> bool:
    """A light approximation of grapheme cluster rules (UAX #29) for keeping clusters whole."""
    cp = ord(ch)
    if previous == "\u200d":  # the character after a zero-width joiner (ZWJ emoji sequences)
        return True
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")  # combining marks
        or cp == 0x200D  # zero-width joiner
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (emoji presentation)
        or 0x1F3FB <= cp <= 0x1F3FF  # emoji skin tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # tag characters (subdivision flags)
        or 0xE0100 <= cp <= 0xE01EF
    )


def _clusters(text: str) -> list[str]:
    clusters: list[str] = []
    regional_run = 0  # regional indicators pair up into flags
    for ch in text:
        is_regional = 0x1F1E6 <= ord(ch) <= 0x1F1FF
        if clusters and (_joins_previous(ch, clusters[-1][-1]) or (is_regional and regional_run % 2 == 1)):
            clusters[-1] += ch
        else:
            clusters.append(ch)
        regional_run = regional_run + 1 if is_regional else 0
    return clusters


def _pack(sizes: list[int], capacity: int) -> int:
    """Segments needed when items of ``sizes`` fill segments of ``capacity`` without being split."""
    segments, used = 1, 0
    for size in sizes:
        if used + size > capacity and used > 0:
            segments += 1
            used = 0
        used += size
        while used > capacity:  # an item bigger than a segment (absurdly long cluster): split it
            segments += 1
            used -= capacity
    return segments


def count_segments(body: str) -> SegmentInfo:
    """Encoding, size and number of SMS segments Twilio will send for ``body`` (no Smart Encoding)."""
    if not body:
        return SegmentInfo("GSM-7", 0, 0, 0)
    if is_gsm7(body):
        sizes = [_septets(ch) for ch in body]
        units = sum(sizes)
        segments = 1 if units <= GSM7_SINGLE else _pack(sizes, GSM7_MULTI)
        return SegmentInfo("GSM-7", len(body), units, segments)
    non_gsm = tuple(dict.fromkeys(ch for ch in body if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION))
    cluster_units = [_utf16_units(cluster) for cluster in _clusters(body)]
    units = sum(cluster_units)
    segments = 1 if units <= UCS2_SINGLE else _pack(cluster_units, UCS2_MULTI)
    return SegmentInfo("UCS-2", len(body), units, segments, non_gsm)


# --- E.164 -------------------------------------------------------------------------------------------

_MAX_INPUT = 64


# The channel checks a number before the client does: the second check is a cache hit, not a
# second parse (~0.1 ms each).
@functools.lru_cache(maxsize=1024)
def validate_e164(number: str, *, region: str | None = None) -> str:
    """Return ``number`` in canonical E.164 (``+14155552671``) or raise ``ValueError`` saying why.

    Spaces, dots, dashes and brackets are accepted and dropped (``+1 (415) 555-2671``). Without
    ``region`` the number must start with ``+`` and its country code; with ``region`` (ISO 3166
    alpha-2, e.g. ``"DE"``) national numbers of that country are accepted too. The number must be
    valid for its country according to libphonenumber's metadata, not only have a plausible length.
    """
    if not isinstance(number, str) or not number.strip():
        raise ValueError("The phone number is empty.")
    raw = number.strip()
    if len(raw) > _MAX_INPUT:
        raise ValueError(f"The phone number is too long ({len(raw)} characters).")
    if region is None and not raw.startswith("+"):
        raise ValueError(
            f"{raw!r} is not in E.164 format: it must start with '+' and the country code, e.g. +14155552671."
        )
    if region is None:  # shared with the quiet-hours check of the same number (core.phones)
        facts = phone_facts(raw)
        if facts.parsed is None:
            raise ValueError(f"{raw!r} is not a phone number ({facts.error}).")
        parsed, valid = facts.parsed, facts.valid
    else:
        try:
            parsed = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"{raw!r} is not a phone number ({exc._msg}).") from None
        valid = phonenumbers.is_valid_number(parsed)
    if parsed.extension:
        raise ValueError(f"{raw!r} has an extension; SMS needs a number without one.")
    country = f"+{parsed.country_code}"
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"{raw!r} has the wrong number of digits for country code {country}.")
    if not valid:
        raise ValueError(f"{raw!r} is not a valid number for country code {country}.")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
