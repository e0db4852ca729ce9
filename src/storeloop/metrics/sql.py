"""Every figure's SQL, written once and run at two scopes.

The full recompute runs these statements over a whole store (or a range of its orders); the
incremental path runs the very same text over one order or one contact. One definition per
figure is what makes "incremental == full recompute" hold by construction; the property test
checks it. The text is portable between SQLite (3.25+: window functions, upsert) and PostgreSQL;
the only dialect difference, the UTC day of a timestamp, comes from ``day_of``.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from storeloop.metrics.definitions import COUNTED_STATUSES, SEGMENT_GRID
from storeloop.metrics.models import (
    MONEY_SCALE,
    ContactMetrics,
    DailyMetrics,
    OrderContribution,
    OrderProductContribution,
    ProductMetrics,
    RfmThresholds,
)
from storeloop.orders.models import Order, OrderLine

OC = OrderContribution._meta.db_table
OPC = OrderProductContribution._meta.db_table
CM = ContactMetrics._meta.db_table
DAILY = DailyMetrics._meta.db_table
PRODUCTS = ProductMetrics._meta.db_table
RFM = RfmThresholds._meta.db_table
ORDERS = Order._meta.db_table
LINES = OrderLine._meta.db_table

# Statuses are constants of ours, not input: inlined so every statement keeps the same parameters.
_COUNTED = "o.deleted_at IS NULL AND o.status IN ({})".format(", ".join(f"'{s}'" for s in COUNTED_STATUSES))


def day_of(connection: BaseDatabaseWrapper, column: str) -> str:
    if connection.vendor == "postgresql":
        return f"CAST({column} AT TIME ZONE 'UTC' AS DATE)"
    return f"date({column})"  # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text


def _e4(expression: str) -> str:
    return f"CAST(ROUND({expression} * {MONEY_SCALE}) AS BIGINT)"


# --- contributions, from the mirror --------------------------------------------------------------

OC_COLUMNS = "order_id, store_id, contact_id, currency, created, day, gross_e4, refunds_e4"
OPC_COLUMNS = "order_id, store_id, contact_id, product_external_id, currency, units, revenue_e4, refunds_e4"


def order_contribution_select(connection: BaseDatabaseWrapper, scope: str) -> str:
    """One row per counted order in ``scope`` (a condition on ``o``), in ``OC_COLUMNS`` order."""
    return (
        f"SELECT o.id, o.store_id, o.contact_id, o.currency, o.date_created, "
        f"{day_of(connection, 'o.date_created')}, {_e4('o.total')}, {_e4('o.refunded_total')} "
        f"FROM {ORDERS} o WHERE {_COUNTED} AND {scope}"
    )


def product_contribution_select(scope: str) -> str:
    """One row per (counted order, product) in ``scope``, in ``OPC_COLUMNS`` order.

    Refunds are spread over the order by value (line total ÷ order total): the mirror does not
    know which lines a refund was for.
    """
    refund_share = (
        f"CASE WHEN o.total > 0 THEN "
        f"CAST(ROUND(o.refunded_total * l.total * {MONEY_SCALE} / o.total) AS BIGINT) ELSE 0 END"
    )
    return (
        f"SELECT o.id, o.store_id, o.contact_id, l.product_external_id, o.currency, "
        f"SUM(l.quantity), SUM({_e4('l.total')}), SUM({refund_share}) "
        f"FROM {ORDERS} o JOIN {LINES} l ON l.order_id = o.id "
        f"WHERE {_COUNTED} AND l.product_external_id <> 0 AND {scope} "
        f"GROUP BY o.id, o.store_id, o.contact_id, l.product_external_id, o.currency"
    )


# --- contact figures and RFM scores, from the contributions --------------------------------------


def _score(value: str, cut: str) -> str:
    return (
        f"CASE WHEN t.id IS NULL THEN NULL "
        f"WHEN {value} > t.{cut}4 THEN 5 WHEN {value} > t.{cut}3 THEN 4 "
        f"WHEN {value} > t.{cut}2 THEN 3 WHEN {value} > t.{cut}1 THEN 2 ELSE 1 END"
    )


def _segment() -> str:
    branches = " ".join(f"WHEN {r * 10 + fm} THEN '{name}'" for (r, fm), name in SEGMENT_GRID.items())
    # (f + m + 1) / 2 is integer division on both databases: definitions.fm_score.
    return f"CASE s.r_score * 10 + (s.f_score + s.m_score + 1) / 2 {branches} ELSE '' END"


CM_COLUMNS = (
    "store_id, contact_id, currency, order_count, purchase_days, gross_e4, refunds_e4, net_e4, "
    "first_day_net_e4, first_order_at, last_order_at, r_score, f_score, m_score, segment"
)


def contact_metrics_insert(scope: str) -> str:
    """Rebuild ``ContactMetrics`` for the contributions in ``scope`` (a condition on ``oc``).

    Scores come from the store's current RFM thresholds (none yet: no scores).
    """
    figures = (
        "SELECT w.store_id, w.contact_id, w.currency, COUNT(*) AS order_count, "
        "COUNT(DISTINCT w.day) AS purchase_days, SUM(w.gross_e4) AS gross_e4, "
        "SUM(w.refunds_e4) AS refunds_e4, SUM(w.gross_e4 - w.refunds_e4) AS net_e4, "
        "SUM(CASE WHEN w.day = w.first_day THEN w.gross_e4 - w.refunds_e4 ELSE 0 END) AS first_day_net_e4, "
        "MIN(w.created) AS first_order_at, MAX(w.created) AS last_order_at "
        "FROM (SELECT oc.store_id, oc.contact_id, oc.currency, oc.created, oc.day, oc.gross_e4, "
        "oc.refunds_e4, MIN(oc.day) OVER (PARTITION BY oc.contact_id, oc.currency) AS first_day "
        f"FROM {OC} oc WHERE oc.contact_id IS NOT NULL AND {scope}) w "
        "GROUP BY w.store_id, w.contact_id, w.currency"
    )
    scored = (
        f"SELECT a.*, {_score('a.last_order_at', 'r_cut')} AS r_score, "
        f"{_score('a.order_count', 'f_cut')} AS f_score, {_score('a.net_e4', 'm_cut')} AS m_score "
        f"FROM ({figures}) a LEFT JOIN {RFM} t ON t.store_id = a.store_id AND t.currency = a.currency"
    )
    return (
        f"INSERT INTO {CM} ({CM_COLUMNS}) "
        "SELECT s.store_id, s.contact_id, s.currency, s.order_count, s.purchase_days, s.gross_e4, "
        "s.refunds_e4, s.net_e4, s.first_day_net_e4, s.first_order_at, s.last_order_at, "
        f"s.r_score, s.f_score, s.m_score, {_segment()} FROM ({scored}) s"
    )


# --- store aggregates, from the contributions (full recompute) ------------------------------------

DAILY_COLUMNS = "store_id, day, currency, orders, gross_e4, refunds_e4, new_customers, returning_customers"
PRODUCT_COLUMNS = (
    "store_id, product_external_id, currency, orders, units, revenue_e4, refunds_e4, buyers, repeat_buyers"
)

DAILY_INSERT = (
    f"INSERT INTO {DAILY} ({DAILY_COLUMNS}) "
    "SELECT u.store_id, u.day, u.currency, SUM(u.orders), SUM(u.gross_e4), SUM(u.refunds_e4), "
    "SUM(u.new_customers), SUM(u.returning_customers) FROM ("
    "SELECT oc.store_id, oc.day, oc.currency, COUNT(*) AS orders, SUM(oc.gross_e4) AS gross_e4, "
    "SUM(oc.refunds_e4) AS refunds_e4, 0 AS new_customers, 0 AS returning_customers "
    f"FROM {OC} oc WHERE oc.store_id = %s GROUP BY oc.store_id, oc.day, oc.currency "
    "UNION ALL "
    "SELECT cd.store_id, cd.day, cd.currency, 0, 0, 0, "
    "CASE WHEN cd.day = cd.first_day THEN 1 ELSE 0 END, CASE WHEN cd.day = cd.first_day THEN 0 ELSE 1 END "
    "FROM (SELECT oc.store_id, oc.day, oc.currency, "
    "MIN(oc.day) OVER (PARTITION BY oc.contact_id, oc.currency) AS first_day "
    f"FROM {OC} oc WHERE oc.store_id = %s AND oc.contact_id IS NOT NULL "
    "GROUP BY oc.store_id, oc.contact_id, oc.currency, oc.day) cd"
    ") u GROUP BY u.store_id, u.day, u.currency"
)

PRODUCT_INSERT = (
    f"INSERT INTO {PRODUCTS} ({PRODUCT_COLUMNS}) "
    "SELECT g.store_id, g.product_external_id, g.currency, SUM(g.orders), SUM(g.units), "
    "SUM(g.revenue_e4), SUM(g.refunds_e4), SUM(g.buyer), SUM(g.repeat_buyer) FROM ("
    "SELECT opc.store_id, opc.product_external_id, opc.currency, COUNT(*) AS orders, "
    "SUM(opc.units) AS units, SUM(opc.revenue_e4) AS revenue_e4, SUM(opc.refunds_e4) AS refunds_e4, "
    "CASE WHEN opc.contact_id IS NULL THEN 0 ELSE 1 END AS buyer, "
    "CASE WHEN opc.contact_id IS NOT NULL AND COUNT(*) >= 2 THEN 1 ELSE 0 END AS repeat_buyer "
    f"FROM {OPC} opc WHERE opc.store_id = %s "
    "GROUP BY opc.store_id, opc.product_external_id, opc.currency, opc.contact_id"
    ") g GROUP BY g.store_id, g.product_external_id, g.currency"
)


# --- the incremental path's reads and writes -----------------------------------------------------

CONTACT_DAYS = f"SELECT currency, day FROM {OC} WHERE contact_id = %s GROUP BY currency, day"
CONTACT_PRODUCTS = (
    f"SELECT product_external_id, currency, COUNT(*) FROM {OPC} "
    "WHERE contact_id = %s GROUP BY product_external_id, currency"
)

DAILY_ADD = (
    f"INSERT INTO {DAILY} ({DAILY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (store_id, day, currency) DO UPDATE SET "
    + ", ".join(
        f"{c} = {DAILY}.{c} + excluded.{c}"
        for c in ("orders", "gross_e4", "refunds_e4", "new_customers", "returning_customers")
    )
)
DAILY_DROP_EMPTY = f"DELETE FROM {DAILY} WHERE store_id = %s AND day = %s AND currency = %s AND orders = 0"

PRODUCT_ADD = (
    f"INSERT INTO {PRODUCTS} ({PRODUCT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (store_id, product_external_id, currency) DO UPDATE SET "
    + ", ".join(
        f"{c} = {PRODUCTS}.{c} + excluded.{c}"
        for c in ("orders", "units", "revenue_e4", "refunds_e4", "buyers", "repeat_buyers")
    )
)
PRODUCT_DROP_EMPTY = (
    f"DELETE FROM {PRODUCTS} WHERE store_id = %s AND product_external_id = %s AND currency = %s "
    "AND orders = 0"
)
