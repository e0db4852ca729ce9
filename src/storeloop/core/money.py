"""Money rendering: decimal strings, never floats."""

from __future__ import annotations

from decimal import Decimal

TWO_PLACES = Decimal("0.01")


def money_str(value: Decimal) -> str:
    """At least two decimals, more only when the amount has them (e.g. KWD's three)."""
    if value == value.quantize(TWO_PLACES):
        return str(value.quantize(TWO_PLACES))
    return format(value.normalize(), "f")
