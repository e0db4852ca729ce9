"""What the figures mean: which orders count, how RFM scores and segments are assigned.

Counted orders
    An order is a purchase when its status is ``processing``, ``completed``, ``on-hold`` or
    ``refunded`` and it is not deleted on the shop (``deleted_at`` is null). These are the
    statuses WooCommerce Analytics reports by default (``pending``, ``failed``, ``cancelled``,
    ``trash``, ``checkout-draft`` and plugin statuses are excluded). A ``refunded`` order stays a
    purchase whose net is reduced by its refunds, usually to zero.

Money
    Gross = the order's ``total`` (tax and shipping included, as WooCommerce reports it);
    refunds = its ``refunded_total``; net = gross − refunds. Refund dates are not mirrored, so a
    refund counts on the day of its order. Product revenue is the sum of the product's line
    ``total`` (after discounts, before tax); a product's refunds are the order's refunds spread
    over the order in proportion to value (line total ÷ order total), because line-level refunds
    are not mirrored. Lines without a product id (custom or fee lines) are left out of product
    figures. Every figure is per currency; nothing ever adds two currencies.

Days
    UTC calendar days of ``date_created``. A customer is *new* on the day of their first counted
    order in that currency and *returning* on every later day with a counted order.

RFM
    Recency = time of the last counted order, frequency = counted orders, monetary = net spend,
    per contact and currency. Scores are quintiles over the contacts of the store and currency:
    the cut points are the nearest-rank 20th, 40th, 60th and 80th percentiles, and a value
    scores 1 + the number of cut points it strictly exceeds. Equal values always share a score,
    so with many ties (most customers buy once) some scores stay empty. The cut points are
    refreshed by the periodic job (``refresh_store_metrics``), which measures recency at its
    ``as_of``; between refreshes each update scores the contact's current R, F and M against the
    stored cut points (recency cuts are stored as timestamps, so a new order scores R=5 at once).
    Fewer than ``MIN_RFM_CONTACTS`` contacts in a currency: no cut points, no scores.

Segments
    The common R × FM grid (FM = the mean of F and M, rounded half up) with the eleven named
    segments below; ``SEGMENT_GRID`` is the whole table, so every score pair has exactly one
    segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

COUNTED_STATUSES: tuple[str, ...] = ("processing", "completed", "on-hold", "refunded")

MIN_RFM_CONTACTS = 5

CHAMPIONS = "champions"
LOYAL = "loyal_customers"
POTENTIAL = "potential_loyalists"
NEW = "new_customers"
PROMISING = "promising"
NEED_ATTENTION = "need_attention"
ABOUT_TO_SLEEP = "about_to_sleep"
AT_RISK = "at_risk"
CANT_LOSE = "cant_lose_them"
HIBERNATING = "hibernating"
LOST = "lost"

SEGMENTS: tuple[str, ...] = (
    CHAMPIONS,
    LOYAL,
    POTENTIAL,
    NEW,
    PROMISING,
    NEED_ATTENTION,
    ABOUT_TO_SLEEP,
    AT_RISK,
    CANT_LOSE,
    HIBERNATING,
    LOST,
)

# Rows: R score 5 (bought most recently) down to 1. Columns: FM score 1 to 5.
_GRID_ROWS: dict[int, tuple[str, str, str, str, str]] = {
    5: (NEW, POTENTIAL, POTENTIAL, CHAMPIONS, CHAMPIONS),
    4: (PROMISING, POTENTIAL, POTENTIAL, LOYAL, LOYAL),
    3: (ABOUT_TO_SLEEP, ABOUT_TO_SLEEP, NEED_ATTENTION, LOYAL, LOYAL),
    2: (HIBERNATING, HIBERNATING, AT_RISK, AT_RISK, CANT_LOSE),
    1: (LOST, HIBERNATING, AT_RISK, AT_RISK, CANT_LOSE),
}

SEGMENT_GRID: dict[tuple[int, int], str] = {(r, fm): row[fm - 1] for r, row in _GRID_ROWS.items() for fm in range(1, 6)}


def fm_score(f: int, m: int) -> int:
    """The grid's column: mean of F and M, rounded half up (integer arithmetic, as in SQL)."""
    return (f + m + 1) // 2


def segment_for(r: int, f: int, m: int) -> str:
    return SEGMENT_GRID[(r, fm_score(f, m))]


def quintile_cuts(sorted_values: Sequence[T]) -> tuple[T, T, T, T]:
    """Nearest-rank 20/40/60/80th percentiles of already sorted values (at least one)."""
    n = len(sorted_values)
    return (
        sorted_values[-(-n // 5) - 1],
        sorted_values[-(-2 * n // 5) - 1],
        sorted_values[-(-3 * n // 5) - 1],
        sorted_values[-(-4 * n // 5) - 1],
    )
