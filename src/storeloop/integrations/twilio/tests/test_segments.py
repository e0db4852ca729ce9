"""GSM-7 / UCS-2 segment counting and E.164 validation."""

from __future__ import annotations

import re

import pytest

from storeloop.integrations.twilio.segments import GSM7_BASIC, GSM7_EXTENSION, count_segments, is_gsm7, validate_e164

WAVE = "\N{WAVING HAND SIGN}"  # outside the BMP: two UTF-16 code units
THUMBS_DARK = "\N{THUMBS UP SIGN}\N{EMOJI MODIFIER FITZPATRICK TYPE-6}"  # one character, four units
FLAG_FR = "\N{REGIONAL INDICATOR SYMBOL LETTER F}\N{REGIONAL INDICATOR SYMBOL LETTER R}"


@pytest.mark.parametrize(
    ("body", "encoding", "characters", "units", "segments"),
    [
        ("", "GSM-7", 0, 0, 0),
        ("Hello", "GSM-7", 5, 5, 1),
        ("Your order #1042 has shipped! Track it: https://shop.example/t/1042", "GSM-7", 67, 67, 1),
        ("Café en forêt: 5€", "UCS-2", 17, 17, 1),  # ê is not GSM 03.38 (é and à are)
        ("Café à Paris: 5€", "GSM-7", 16, 17, 1),  # € is an extension character: 2 septets
        ("{[~]}", "GSM-7", 5, 10, 1),
        ("ΔΦΓΛΩΠΨΣΘΞ", "GSM-7", 10, 10, 1),  # Greek capitals of the basic set
        ("a" * 160, "GSM-7", 160, 160, 1),  # boundary: one segment
        ("a" * 161, "GSM-7", 161, 161, 2),  # 153 + 8
        ("a" * 306, "GSM-7", 306, 306, 2),
        ("a" * 307, "GSM-7", 307, 307, 3),
        ("€" * 80, "GSM-7", 80, 160, 1),  # 80 extension chars fill 160 septets exactly
        ("€" * 81, "GSM-7", 81, 162, 2),
        ("a" * 152 + "€" + "a", "GSM-7", 154, 155, 1),  # fits the single-segment 160
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 305, 306, 3),  # ESC+€ is not split: 152 | 153 | 1
        ("a" * 153 + "€" + "a" * 151, "GSM-7", 305, 306, 2),
        ("ł" * 70, "UCS-2", 70, 70, 1),  # boundary: one segment
        ("ł" * 71, "UCS-2", 71, 71, 2),  # 67 + 4
        ("ł" * 134, "UCS-2", 134, 134, 2),
        ("ł" * 135, "UCS-2", 135, 135, 3),
        ("Hi " + WAVE, "UCS-2", 4, 5, 1),  # the emoji counts 2 UTF-16 code units
        (WAVE * 35, "UCS-2", 35, 70, 1),
        (WAVE * 36, "UCS-2", 36, 72, 2),
        ("a" * 66 + WAVE + "b", "UCS-2", 68, 69, 1),
        ("a" * 66 + WAVE * 3, "UCS-2", 69, 72, 2),
        ("a" * 66 + WAVE + "a" * 66, "UCS-2", 133, 134, 3),  # the surrogate pair is not split: 66 | 67 | 1
        ("a" * 67 + WAVE + "a" * 65, "UCS-2", 133, 134, 2),
        ("a" * 65 + THUMBS_DARK + "b" * 4, "UCS-2", 71, 73, 2),  # a skin-toned emoji stays whole
        ("a" * 66 + FLAG_FR + "b" * 3, "UCS-2", 71, 73, 2),  # so does a flag
        ("It’s here", "UCS-2", 9, 9, 1),  # a curly apostrophe is enough for UCS-2
        ("line one\nline two\r\n", "GSM-7", 19, 19, 1),
    ],
)
def test_segment_table(body: str, encoding: str, characters: int, units: int, segments: int) -> None:
    info = count_segments(body)
    assert (info.encoding, info.characters, info.units, info.segments) == (encoding, characters, units, segments)


def test_non_gsm_characters_are_reported_once_in_order() -> None:
    info = count_segments("It’s 5€ – ok’")
    assert info.encoding == "UCS-2"
    assert info.non_gsm == ("’", "–")
    assert count_segments("plain").non_gsm == ()


def test_per_segment_capacity() -> None:
    assert count_segments("a").per_segment == 160
    assert count_segments("a" * 200).per_segment == 153
    assert count_segments("ł").per_segment == 70
    assert count_segments("ł" * 100).per_segment == 67


def test_alphabet_tables() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points less ESC
    assert len(GSM7_EXTENSION) == 10
    assert is_gsm7("@£$¥èéùìòÇØøÅåÆæßÉÄÖÑÜ§¿äöñüà¡¤")
    assert not is_gsm7("`")  # backtick is not in GSM 03.38
    assert not is_gsm7("ç")  # only the capital Ç is


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155552671", None, "+14155552671"),
        ("+1 (415) 555-2671", None, "+14155552671"),
        (" +44 7911 123456 ", None, "+447911123456"),
        ("+49 151 12345678", None, "+4915112345678"),
        ("0151 12345678", "DE", "+4915112345678"),
        ("(415) 555-2671", "US", "+14155552671"),
    ],
)
def test_validate_e164_accepts_and_normalises(raw: str, region: str | None, expected: str) -> None:
    assert validate_e164(raw, region=region) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("4155552671", "must start with '+'"),
        ("+1", "not a phone number"),
        ("+1555867531", "wrong number of digits"),
        ("+15558675310", "not a valid number for country code +1"),
        ("+99912345678", "not a phone number"),  # no such country code
        ("+1 415 555 2671 ext. 12", "extension"),
        ("call me maybe", "must start with '+'"),
        ("+" + "1" * 70, "too long"),
    ],
)
def test_validate_e164_rejects_with_a_clear_message(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_e164(raw)
