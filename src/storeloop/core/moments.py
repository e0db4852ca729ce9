"""``Moment``: the datetime type of API inputs, bounded to years every conversion can hold.

Python's datetime ends at year 9999 and starts at year 1: ``9999-12-31T23:00:00-05:00`` is valid
until it is converted to UTC (``OverflowError``), and a database may refuse what Python accepts.
No time this service is told about (a schedule, when consent was given, a backfill's start) lies
outside 1900-2999, so those are refused at the door with a 422 naming the field.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator

EARLIEST_YEAR, LATEST_YEAR = 1900, 2999


def within_range(value: dt.datetime) -> dt.datetime:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"give a time between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


Moment = Annotated[dt.datetime, AfterValidator(within_range)]
