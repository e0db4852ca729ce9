"""When a marketing message may go out: frequency caps and quiet hours in the recipient's zone.

Both delay (move ``not_before``), never drop: the message still goes, later.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as phone_timezone
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from storeloop.consent.models import Channel, Preference
from storeloop.core.phones import phone_facts

# Klaviyo's defaults: one marketing email per 16 h, one SMS per 24 h (WhatsApp like SMS).
DEFAULT_CAPS = {
    Channel.EMAIL: dt.timedelta(hours=16),
    Channel.SMS: dt.timedelta(hours=24),
    Channel.WHATSAPP: dt.timedelta(hours=24),
}
FREQUENCY_CAPS = {
    Preference.Frequency.WEEKLY: dt.timedelta(days=7),
    Preference.Frequency.MONTHLY: dt.timedelta(days=30),
}
QUIET_START = dt.time(21, 0)
QUIET_END = dt.time(8, 0)
QUIET_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP})
QuietHours = tuple[dt.time, dt.time]  # (start, end) in the recipient's local time; may span midnight
DEFAULT_QUIET_HOURS: QuietHours = (QUIET_START, QUIET_END)


@dataclass(frozen=True)
class MarketingPolicy:
    """A store's rules for marketing on one channel (its connection's settings, else the defaults).

    ``cap``: the least time between two marketing messages to one contact (zero: no cap);
    ``quiet_hours``: when the recipient's local clock is in it, marketing waits (None: never).
    """

    cap: dt.timedelta
    quiet_hours: QuietHours | None

    @classmethod
    def for_channel(
        cls, channel: str, cap_hours: float | None = None, quiet_start: dt.time | None = None,
        quiet_end: dt.time | None = None,
    ) -> MarketingPolicy:  # fmt: skip
        """The policy from a connection's settings; an unset one takes the channel's default. Quiet
        hours that start and end at the same time are none."""
        cap = DEFAULT_CAPS[Channel(channel)] if cap_hours is None else dt.timedelta(hours=cap_hours)
        quiet: QuietHours | None = DEFAULT_QUIET_HOURS if channel in QUIET_CHANNELS else None
        if quiet_start is not None and quiet_end is not None:
            quiet = None if quiet_start == quiet_end else (quiet_start, quiet_end)
        return cls(cap, quiet)


def cap_for(channel: str, frequency: str | None, policy: MarketingPolicy | None = None) -> dt.timedelta:
    base = DEFAULT_CAPS[Channel(channel)] if policy is None else policy.cap
    extra = FREQUENCY_CAPS.get(frequency) if frequency else None  # type: ignore[call-overload]
    return max(base, extra) if extra else base


def next_allowed_by_cap(
    last_sent: dt.datetime | None, channel: str, frequency: str | None, policy: MarketingPolicy | None = None
) -> dt.datetime | None:
    """``None`` when the cap allows sending now-ish; otherwise the earliest time it allows."""
    if last_sent is None:
        return None
    return last_sent + cap_for(channel, frequency, policy)


@lru_cache(maxsize=4096)
def zone_for(phone: str, country: str) -> ZoneInfo:
    """The recipient's time zone: from the phone number, else the country, else UTC (the first
    of ``zones_for``, the most likely one: what a local-time campaign schedules by)."""
    return zones_for(phone, country)[0]


def zones_for(phone: str, country: str) -> tuple[ZoneInfo, ...]:
    """Every zone the recipient may be in, as libphonenumber lists them for the number (one for
    most numbers; for mobiles of countries that span zones, all of them: 16 for Russia's and
    Kazakhstan's +7, 8 for Australia's), else the country's main zone (``_main_zone``), else UTC.

    Of several, the most likely comes first (``_main_first``): libphonenumber lists them
    alphabetically, which would put a Moscow mobile in Almaty and a Toronto toll-free number on
    Adak, Alaska."""
    candidates: tuple[str, ...] = ()
    if phone:
        candidates = _zones_of_number(phone)
    if (not candidates or candidates[0] == phone_timezone.UNKNOWN_TIMEZONE) and country:
        main = _main_zone(country.upper())
        if main is not None:
            return (main,)
        example = phonenumbers.example_number(country.upper())
        if example is not None:
            candidates = tuple(phone_timezone.time_zones_for_number(example))
    zones = _known_zones(candidates) or (ZoneInfo("UTC"),)
    if len(zones) > 1:
        zones = _main_first(zones, country.upper(), _region_of_number(phone))
    return zones


# Where most people of a country that spans zones live, where libphonenumber's example landline
# (``_main_zone``'s rule) is elsewhere: Russia's is in Irkutsk, Canada's in Halifax.
MAIN_ZONES = {
    "CA": "America/Toronto",
    "IE": "Europe/London",  # libphonenumber lists Irish numbers under London's zone (same clock as Dublin)
    "KZ": "Asia/Almaty",
    "MX": "America/Mexico_City",
    "RU": "Europe/Moscow",
    "US": "America/New_York",
}


@lru_cache(maxsize=1024)
def _main_first(zones: tuple[ZoneInfo, ...], country: str, number_region: str) -> tuple[ZoneInfo, ...]:
    """``zones`` with the contact's country's main zone first, else the number's region's, when
    it is one of them; else as listed."""
    for region in (country, number_region):
        main = _main_zone(region) if region else None
        if main is not None and main in zones:
            return (main, *(zone for zone in zones if zone != main))
    return zones


@lru_cache(maxsize=512)
def _main_zone(region: str) -> ZoneInfo | None:
    """A region's main zone: ``MAIN_ZONES``, else the zone of its example landline when that has one."""
    if region in MAIN_ZONES:
        return ZoneInfo(MAIN_ZONES[region])
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.FIXED_LINE)
    names = phone_timezone.time_zones_for_number(example) if example is not None else ()
    return ZoneInfo(names[0]) if len(names) == 1 and names[0] != phone_timezone.UNKNOWN_TIMEZONE else None


@lru_cache(maxsize=1024)
def _region_of_number(phone: str) -> str:
    """The region (``"JM"``) a number belongs to, "" when unknown: asked only of numbers listed in
    several zones (for +1 it tries each of the plan's 25 regions)."""
    facts = phone_facts(phone) if phone else None
    if facts is None or facts.parsed is None:
        return ""
    return phonenumbers.region_code_for_number(facts.parsed) or ""


def _zones_of_number(phone: str) -> tuple[str, ...]:
    """``phonenumbers.timezone.time_zones_for_number``, from the number's cached facts (the SMS
    channel's validation of the same number reuses them)."""
    facts = phone_facts(phone)
    if facts.parsed is None:
        return ()
    if facts.number_type == PhoneNumberType.UNKNOWN:
        return (phone_timezone.UNKNOWN_TIMEZONE,)
    code = str(facts.parsed.country_code)
    if not phonenumbers.is_number_type_geographical(facts.number_type, int(code)):
        # The calling code's zones, looked up as phonenumbers does (the code, then its first two digits).
        zones = TIMEZONE_DATA.get(code) or TIMEZONE_DATA.get(code[:2])
        return tuple(zones) if zones else (phone_timezone.UNKNOWN_TIMEZONE,)
    return tuple(phone_timezone.time_zones_for_geographical_number(facts.parsed))


def recipient_quiet_until(
    now: dt.datetime, phone: str, country: str, hours: QuietHours = DEFAULT_QUIET_HOURS
) -> dt.datetime | None:
    """``quiet_until_everywhere`` in the recipient's zones (``zones_for``), cheaply when the answer
    is clear.

    Working out the zones of a number costs ~0.1 ms (parsing it and classifying it as fixed, mobile
    ...). Without that, only three lists are possible: the one its longest listed prefix names
    (geographic numbers), its calling code's (other numbers) and the country fallback (numbers
    ``phonenumbers`` does not know). When it is quiet time in none of their zones, it is not quiet
    time for the recipient either — exactly, without the per-number work.
    """
    possible = _possible_zone_lists(phone, country)
    if possible is not None and not _quiet_in_any(now, possible, hours):
        return None
    return quiet_until_everywhere(now, zones_for(phone, country), hours)


def quiet_until_everywhere(
    now: dt.datetime, zones: tuple[ZoneInfo, ...], hours: QuietHours = DEFAULT_QUIET_HOURS
) -> dt.datetime | None:
    """The first moment from ``now`` when it is daytime in every one of ``zones`` (None: now).

    A number that may be in several zones (a Moscow mobile is listed from Bucharest's zone to
    Kamchatka's) waits until it is daytime in all of them: in the first listed zone alone (Almaty,
    UTC+5) a text would reach Moscow at 06:00. Even the 42 zones of a +1 toll-free number, Guam to
    Bermuda, share two hours of daytime; only zones that share none within a day (spread over more
    than 13 hours) leave the first zone to decide, as for a number with one zone.
    """
    if len(zones) == 1:
        return quiet_until(now, zones[0], hours)
    moment = now
    while moment - now < dt.timedelta(days=1):
        ends = [end for zone in zones if (end := quiet_until(moment, zone, hours)) is not None]
        if not ends:
            return None if moment == now else moment
        moment = max(ends)  # each step ends a quiet period somewhere: at most a few per zone in a day
    return quiet_until(now, zones[0], hours)


_E164 = re.compile(r"\+[1-9][0-9]{1,14}")  # ASCII only: \d would also match other scripts' digits


# The zone lists ``zones_for`` can return for a number, named by where they come from: the
# longest listed prefix of its digits, its calling code, the country. Hashable and small, so the
# answer for all of them is worked out once per batch (``now``), not once per recipient (the 42
# zones of +1 alone took ~15 µs a number).
_ZoneLists = tuple[str, str, str]


def _possible_zone_lists(phone: str, country: str) -> _ZoneLists | None:
    """Where the zones ``zones_for(phone, country)`` can return are listed; None when the number
    is not plain E.164."""
    if not _E164.fullmatch(phone):
        return None
    digits = phone[1:]
    code = next((digits[:n] for n in (1, 2, 3) if int(digits[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE), None)
    if code is None:
        return None
    return (_longest_listed_prefix(digits), _longest_listed_prefix(code), country)


@lru_cache(maxsize=1024)
def _quiet_in_any(now: dt.datetime, lists: _ZoneLists, hours: QuietHours) -> bool:
    """Whether it is quiet time in any zone of the lists (``_possible_zone_lists``)."""
    prefix, code, country = lists
    zones = (*_known_zones(_listed_zones(prefix)), *_known_zones(_listed_zones(code)), *zones_for("", country))
    return any(quiet_until(now, zone, hours) for zone in zones)


def _longest_listed_prefix(digits: str) -> str:
    """The longest prefix of ``digits`` that ``phonenumbers`` lists zones under ("": none), found
    as its own lookup does."""
    for length in range(min(len(digits), TIMEZONE_LONGEST_PREFIX), 0, -1):
        if digits[:length] in TIMEZONE_DATA:
            return digits[:length]
    return ""


def _listed_zones(prefix: str) -> tuple[str, ...]:
    zones = TIMEZONE_DATA.get(prefix) if prefix else None
    return tuple(zones) if zones else ()


@lru_cache(maxsize=4096)
def _known_zones(names: tuple[str, ...]) -> tuple[ZoneInfo, ...]:
    """The zones of a libphonenumber list, without its "unknown" (none: ``zones_for`` falls back
    to the country)."""
    return tuple(ZoneInfo(name) for name in names if name != phone_timezone.UNKNOWN_TIMEZONE)


@lru_cache(maxsize=1024)
def quiet_until(now: dt.datetime, zone: ZoneInfo, hours: QuietHours = DEFAULT_QUIET_HOURS) -> dt.datetime | None:
    """If it is quiet time (``hours``, by default 21:00–08:00) where the recipient is, when it ends
    (UTC); else None."""
    start, end = hours
    local = now.astimezone(zone)
    clock = local.time()
    quiet = (clock >= start or clock < end) if start > end else start <= clock < end
    if not quiet:
        return None
    day = local.date() if clock < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=zone).astimezone(dt.UTC)
