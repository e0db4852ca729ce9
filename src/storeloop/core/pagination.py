"""Limit/offset pagination shared by every list endpoint."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import QuerySet

from storeloop.core.errors import ValidationError

MAX_LIMIT = 200
T = TypeVar("T")


def paginate(qs: QuerySet[Any], *, limit: int, offset: int) -> tuple[list[Any], int, int | None]:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            f"limit must be between 1 and {MAX_LIMIT}",
            code="invalid_limit",
            details=[{"field": "limit", "error": f"1..{MAX_LIMIT}"}],
        )
    if offset < 0:
        raise ValidationError(
            "offset must be 0 or more", code="invalid_offset", details=[{"field": "offset", "error": ">= 0"}]
        )
    count = qs.count()
    # Past the end there is nothing to read; not asking also keeps a huge offset out of the SQL,
    # where it would not fit the database's integers.
    items = list(qs[offset : offset + limit]) if offset < count else []
    next_offset = offset + limit if offset + limit < count else None
    return items, count, next_offset
