"""The parser's fast paths (dates, amounts, addresses) give exactly what the full checks give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storeloop.integrations.woocommerce.errors import WooPayloadError
from storeloop.integrations.woocommerce.models import WooAddress, parse_order, parse_wc_datetime
from storeloop.integrations.woocommerce.tests.test_models import documented_order

ADDRESS_FIELDS = list(WooAddress.__dataclass_fields__)


def reference_datetime(value: str) -> datetime | None:
    """The parser before its fast path: ``fromisoformat``, then UTC for a zone-less value."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def outcome(value: str) -> datetime | None:
    try:
        return parse_wc_datetime(value)
    except WooPayloadError:
        return None


zones = st.sampled_from(["", "Z", "+00:00", "+02:00", "-05:30", "+0000", "+14:00", "+00:00:30"])
fractions = st.sampled_from(["", ".5", ".123", ".123456", ",25"])
separators = st.sampled_from(["T", " ", "t"])


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    separator=separators,
    fraction=fractions,
    zone=zones,
    padding=st.sampled_from(["", " ", "\t", "\n "]),
)
def test_dates_in_any_iso_spelling_parse_as_before(
    moment: datetime, separator: str, fraction: str, zone: str, padding: str
) -> None:
    text = f"{padding}{moment:%Y-%m-%d}{separator}{moment:%H:%M:%S}{fraction}{zone}{padding}"
    assert outcome(text) == reference_datetime(text)
    if outcome(text) is not None:
        assert outcome(text).tzinfo is UTC  # type: ignore[union-attr]


@given(st.text(max_size=40))
def test_any_text_parses_or_fails_as_before(text: str) -> None:
    assert outcome(text) == reference_datetime(text)


@pytest.mark.parametrize(
    "text",
    ["2017-03-22", "2017-03-22T21", "2017-03-22T21:28", "20170322T212808", "2017-W12-3", "2017-03-22T21:28:08+"],
)
def test_short_and_odd_forms_parse_as_before(text: str) -> None:
    assert outcome(text) == reference_datetime(text)


def test_zoned_values_keep_their_instant() -> None:
    assert parse_wc_datetime("2017-03-22T21:28:08+02:00") == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)
    assert parse_wc_datetime("2017-03-22T21:28:08Z") == datetime(2017, 3, 22, 21, 28, 8, tzinfo=UTC)
    local = datetime(2017, 3, 22, 21, 28, 8, tzinfo=timezone(timedelta(hours=-3)))
    assert parse_wc_datetime(local.isoformat()) == local.astimezone(UTC)


def reference_amount(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@given(st.one_of(st.decimals(allow_nan=True, allow_infinity=True).map(str), st.text(max_size=12)))
def test_amount_strings_parse_or_fail_as_before(text: str) -> None:
    payload = documented_order()
    payload["total_tax"] = text
    expected = reference_amount(text)
    if expected is None:
        with pytest.raises(WooPayloadError, match=r"order\.total_tax:"):
            parse_order(payload)
        return
    parsed = parse_order(payload).total_tax
    assert (parsed, str(parsed)) == (expected, str(expected))  # same value and same exponent
    assert (parse_order(payload).total_tax, str(parse_order(payload).total_tax)) == (expected, str(expected))


address_values = st.one_of(
    st.text(max_size=8), st.integers(-5, 10**6), st.none(), st.booleans(), st.just(1.5), st.just(["x"])
)


@given(st.dictionaries(st.sampled_from([*ADDRESS_FIELDS, "extra"]), address_values))
def test_addresses_take_the_same_values_or_the_same_error(fields: dict[str, Any]) -> None:
    payload = documented_order()
    payload["billing"] = fields
    expected: dict[str, str] = {}
    bad = None
    for name in ADDRESS_FIELDS:
        value = fields.get(name)
        if value is None:
            expected[name] = ""
        elif isinstance(value, str):
            expected[name] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            expected[name] = str(value)  # e.g. a postcode stored as a number
        else:
            bad = bad or name
    if bad is not None:
        with pytest.raises(WooPayloadError, match=rf"order\.billing\.{bad}:"):
            parse_order(payload)
    else:
        assert parse_order(payload).billing == WooAddress(**expected)
