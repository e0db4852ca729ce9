"""Small helpers shared by the fake shop: deterministic hashing, WooCommerce formats, PHP-style JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

_M64 = (1 << 64) - 1
CENT = Decimal("0.01")


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash (used where we index 1M orders)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def h(seed: int, salt: int, i: int) -> int:
    """Deterministic 64-bit value for (seed, salt, i)."""
    return mix64((seed * 0x100000001B3 + salt * 0xD1B54A32D192ED03 + i) & _M64)


def unit(value: int) -> float:
    """Map a 64-bit hash to [0, 1)."""
    return (value >> 11) / float(1 << 53)


def money(value: Decimal) -> str:
    """WooCommerce money string: 2 decimals (``dp``)."""
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def q2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def gmt(ts: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` in UTC, no zone (the ``*_gmt`` fields)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")[:19]


def local(ts: int, tz: tzinfo) -> str:
    """The same instant in the site timezone, no zone (the non-``_gmt`` fields)."""
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")[:19]


def set_date(data: dict[str, Any], name: str, ts: int | None, tz: tzinfo) -> None:
    if ts is None:
        data[name] = None
        data[name + "_gmt"] = None
    else:
        data[name] = local(ts, tz)
        data[name + "_gmt"] = gmt(ts)


def php_json(value: Any) -> bytes:
    """JSON as PHP's ``json_encode`` without flags writes it (what WordPress sends).

    Non-ASCII becomes ``\\uXXXX`` and ``/`` becomes ``\\/``: receivers that re-serialise before
    checking a webhook signature break on exactly this, so the fake reproduces it.
    """
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


class RawJson(bytes):
    """Already-encoded JSON: the server sends these bytes as they are."""
