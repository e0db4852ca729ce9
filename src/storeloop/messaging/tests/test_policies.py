"""Quiet hours: the shortcut that skips working out a number's zones gives the exact answer, a
number listed in several zones waits for daytime in all of them, and the number facts shared with
the SMS channel answer as libphonenumber does."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import phonenumbers
import phonenumbers.timezone
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from storeloop.core.phones import phone_facts
from storeloop.messaging.policies import (
    quiet_until,
    quiet_until_everywhere,
    recipient_quiet_until,
    zone_for,
    zones_for,
)

CALLING_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
EXAMPLES = sorted(
    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    for region in REGIONS
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    if (number := phonenumbers.example_number_for_type(region, kind)) is not None
)

moments = st.datetimes(
    min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31), timezones=st.just(dt.UTC)
)
# Real numbers of every region (geographic and mobile), numbers made up under every calling code
# (valid, invalid, too short, too long), and strings that are not E.164 at all.
made_up = st.builds(
    lambda code, rest: f"+{code}{rest}", st.sampled_from(CALLING_CODES), st.from_regex(r"\d{1,12}", fullmatch=True)
)
phones = st.one_of(
    st.sampled_from(EXAMPLES), made_up, st.sampled_from(["", "+", "0301234567", "+49 30 123456", "+999123"])
)
countries = st.one_of(st.just(""), st.sampled_from(REGIONS), st.just("XX"))


@settings(max_examples=3000, deadline=None)
@given(now=moments, phone=phones, country=countries)
# Digits of another script: libphonenumber reads them as ASCII digits, a prefix lookup does not.
@example(now=dt.datetime(2026, 1, 1, 13, 0, tzinfo=dt.UTC), phone="+62\u0ed40100000", country="")
def test_the_shortcut_answers_exactly_like_the_recipients_zones(now: dt.datetime, phone: str, country: str) -> None:
    assert recipient_quiet_until(now, phone, country) == quiet_until_everywhere(now, zones_for(phone, country))


clock_times = st.builds(dt.time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@settings(max_examples=1000, deadline=None)
@given(now=moments, phone=phones, country=countries, start=clock_times, end=clock_times)
def test_a_stores_own_quiet_hours_hold_exactly_while_the_local_clock_is_in_them(
    now: dt.datetime, phone: str, country: str, start: dt.time, end: dt.time
) -> None:
    """Any window, across midnight or within a day: quiet exactly while the clock is in it (one
    zone), until later; the shortcut agrees with the full path."""
    hours = (start, end)
    until = recipient_quiet_until(now, phone, country, hours)
    assert until == quiet_until_everywhere(now, zones_for(phone, country), hours)
    zone = zone_for(phone, country)
    clock = now.astimezone(zone).time()
    inside = (clock >= start or clock < end) if start > end else start <= clock < end
    single = quiet_until(now, zone, hours)
    assert (single is not None) == inside
    assert single is None or single > now


@settings(max_examples=1000, deadline=None)
@given(now=moments, phone=phones, country=countries)
def test_a_send_waits_for_daytime_in_every_zone_of_the_number(now: dt.datetime, phone: str, country: str) -> None:
    """Never at night in any zone the recipient may be in — unless the zones share no daytime
    within a day, when the first one decides."""
    zones = zones_for(phone, country)
    until = recipient_quiet_until(now, phone, country)
    if until is None:
        assert not any(quiet_until(now, zone) for zone in zones)
        return
    assert until > now
    if any(quiet_until(until, zone) for zone in zones):  # no shared daytime: the fallback
        assert until == quiet_until(now, zones[0])
    else:  # and no earlier moment of shared daytime (checked every 15 minutes)
        steps = int((until - now) / dt.timedelta(minutes=15))
        moments_before = [now + n * dt.timedelta(minutes=15) for n in range(steps)]
        assert all(any(quiet_until(m, zone) for zone in zones) for m in moments_before)


def test_a_mobile_of_a_country_that_spans_zones_is_texted_in_daytime_everywhere() -> None:
    # Russia's +7 mobiles are listed in 16 zones, libphonenumber's first Almaty (UTC+5): at 03:30
    # UTC it is 08:30 there but 06:30 in Moscow. Daytime everywhere starts at 08:00 in Moscow and Bucharest.
    early = dt.datetime(2026, 6, 1, 3, 30, tzinfo=dt.UTC)
    assert zones_for("+79161234567", "")[0] == zone_for("+79161234567", "") == ZoneInfo("Europe/Moscow")
    assert quiet_until(early, ZoneInfo("Asia/Almaty")) is None
    assert recipient_quiet_until(early, "+79161234567", "") == dt.datetime(2026, 6, 1, 5, 0, tzinfo=dt.UTC)
    moscow_landline = "+74951234567"  # one zone
    assert recipient_quiet_until(early, moscow_landline, "") == dt.datetime(2026, 6, 1, 5, 0, tzinfo=dt.UTC)
    # Australian mobiles: Perth (UTC+8) is asleep at 21:00 UTC although Sydney is not; the Cocos
    # Islands (UTC+6:30), also listed, wake last.
    evening = dt.datetime(2026, 6, 1, 21, 0, tzinfo=dt.UTC)
    assert recipient_quiet_until(evening, "+61412345678", "") == dt.datetime(2026, 6, 2, 1, 30, tzinfo=dt.UTC)
    # A Sydney landline has one zone: 07:00 there, quiet until 08:00.
    assert recipient_quiet_until(evening, "+61298765432", "") == dt.datetime(2026, 6, 1, 22, 0, tzinfo=dt.UTC)


def test_quiet_time_is_found_in_the_recipients_own_zone() -> None:
    evening = dt.datetime(2026, 6, 1, 20, 30, tzinfo=dt.UTC)  # 22:30 in Berlin, 16:30 in New York
    berlin_morning = dt.datetime(2026, 6, 2, 6, 0, tzinfo=dt.UTC)  # 08:00 CEST
    assert recipient_quiet_until(evening, "+4915112345678", "") == berlin_morning
    assert recipient_quiet_until(evening, "+12125550123", "") is None
    assert recipient_quiet_until(evening, "", "DE") == berlin_morning  # no phone: the country's zone


def _zones_by_phonenumbers(phone: str) -> list[ZoneInfo]:
    """``zones_for(phone, "")`` computed from libphonenumber directly: its known zones, else UTC."""
    try:
        names = phonenumbers.timezone.time_zones_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        names = []
    return [ZoneInfo(name) for name in names if name != "Etc/Unknown"] or [ZoneInfo("UTC")]


@settings(max_examples=3000, deadline=None)
@given(phone=phones)
def test_the_zones_of_a_number_are_libphonenumbers_own(phone: str) -> None:
    """``zones_for`` reads a number's zones from the facts it shares with the SMS channel's check;
    they must be exactly what ``phonenumbers.timezone.time_zones_for_number`` says, in its order
    but for the main one, first; ``zone_for`` is that one."""
    listed = _zones_by_phonenumbers(phone)
    zones = zones_for(phone, "")
    assert sorted(zones, key=str) == sorted(listed, key=str)
    assert zone_for(phone, "") == zones[0]
    assert [zone for zone in listed if zone != zones[0]] == list(zones[1:])


@pytest.mark.parametrize(
    ("phone", "country", "zone"),
    [
        ("+79161234567", "", "Europe/Moscow"),  # 16 zones, Almaty listed first
        ("+79161234567", "KZ", "Asia/Almaty"),  # the same number of a contact in Kazakhstan
        ("+61412345678", "", "Australia/Sydney"),  # 8 zones, Adelaide listed first
        ("+18005550123", "", "America/New_York"),  # a toll-free number: the plan's 42 zones, Adak first
        ("+18005550123", "CA", "America/Toronto"),
        ("+18765551234", "", "America/Jamaica"),  # a Jamaican mobile is listed under all of +1
        ("", "RU", "Europe/Moscow"),  # no number: the country's main zone (its example landline is in Irkutsk)
        ("", "CA", "America/Toronto"),
        ("", "JP", "Asia/Tokyo"),
        ("", "XX", "UTC"),
    ],
)
def test_of_several_zones_the_main_one_comes_first(phone: str, country: str, zone: str) -> None:
    assert zone_for(phone, country) == zones_for(phone, country)[0] == ZoneInfo(zone)


@settings(max_examples=3000, deadline=None)
@given(phone=phones)
def test_shared_facts_give_libphonenumbers_validity(phone: str) -> None:
    facts = phone_facts(phone)
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        assert facts.parsed is None
        return
    assert facts.parsed == parsed
    assert facts.valid == phonenumbers.is_valid_number(parsed)
