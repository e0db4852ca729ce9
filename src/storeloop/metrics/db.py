"""Small database helpers of the metrics app: locks and value normalisation across backends."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_date, parse_datetime

from storeloop.contacts.models import Contact

# Namespace of our PostgreSQL advisory locks (two-key form: namespace, store id).
_LOCK_NAMESPACE = 0x4D45  # "ME"


def lock_store(store_id: int, *, exclusive: bool) -> None:
    """Hold the store's metrics lock until the transaction ends (PostgreSQL; SQLite has one writer).

    Incremental updates take it shared, so they run side by side (their aggregate writes are
    commutative increments); a rebuild takes it exclusive, so no increment lands between its
    DELETE and its INSERT … SELECT, and no two rebuilds insert the same key.
    """
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [_LOCK_NAMESPACE, store_id])


@contextlib.contextmanager
def bulk_page_cache(kib: int = 262_144) -> Iterator[None]:
    """SQLite: a page cache big enough for a whole store's rebuild, for its duration only.

    The default (2 MiB) makes every insert into an index kept in another order than the rows
    arrive in a page miss, and every miss a page written again to the WAL: the rebuild of a
    1,000,000-order store then runs several times slower. The cache only grows as pages are
    used, and the connection's own setting is put back afterwards.
    """
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        previous = int(cursor.fetchone()[0])
        cursor.execute(f"PRAGMA cache_size = {-int(kib)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {previous}")


def lock_contacts(contact_ids: Iterable[int]) -> None:
    """Serialise updates of the same contact: each one reads its contributions, then applies deltas."""
    ids = sorted(contact_ids)
    if ids and connection.vendor == "postgresql":
        list(Contact.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))


def as_date(value: Any) -> dt.date:
    """A day as read back by a raw cursor (SQLite: text from expressions, date from columns)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    parsed = parse_date(str(value))
    if parsed is None:
        raise ValueError(f"not a date: {value!r}")
    return parsed


def as_datetime(value: Any) -> dt.datetime:
    """A UTC timestamp as read back by a raw cursor (SQLite: naive text; PostgreSQL: aware)."""
    parsed = value if isinstance(value, dt.datetime) else parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"not a datetime: {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def db_date(value: dt.date) -> Any:
    return connection.ops.adapt_datefield_value(value)


def db_datetime(value: dt.datetime) -> Any:
    # SQLite stores naive UTC text: the default sqlite3 adapter would add '+00:00' and break
    # the text comparisons RFM scoring relies on.
    return connection.ops.adapt_datetimefield_value(value)
