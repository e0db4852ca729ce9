"""Time in one place: always aware UTC, so tests can travel with time-machine."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

UTC = dt.UTC


def now() -> dt.datetime:
    return timezone.now()


def ensure_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: Storeloop keeps every time in UTC with its zone")
    return value.astimezone(UTC)
