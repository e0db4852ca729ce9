# ruff: noqa: S608 — statements are assembled from our own table names and constants only; every
# value is a query parameter.
"""Every figure's SQL, written once and run at two scopes.

The full recompute runs these statements over a whole store (or a range of its orders); the
incremental path runs the very same text over one order or one contact. One definition per
figure is what makes "incremental == full recompute" hold by construction; the property test
checks it. The text is portable between SQLite (3.25+: window functions, upsert) and PostgreSQL;
the only dialect difference, the UTC day of a timestamp, comes from ``day_of``.

SQLite aggregates by sorting unless it reads rows in the grouping's index order, so the contact
figures are grouped on the prefix of a covering index and stream through it; other big reads go
through the rowid ("NOT INDEXED") rather than a secondary index and a row lookup per entry.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from storeloop.metrics.definitions import COUNTED_STATUSES, SEGMENT_GRID
from storeloop.metrics.models import (
    MONEY_SCALE,
    ContactMetrics,
    DailyMetrics,
    OrderContribution,
    OrderLineContribution,
    ProductMetrics,
    RfmThresholds,
)
from storeloop.orders.models import Order, OrderLine

OC = OrderContribution._meta.db_table
OLC = OrderLineContribution._meta.db_table
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


def _table_scan(connection: BaseDatabaseWrapper) -> str:
    """SQLite: read a table through its rowid only (a range of it, or all of it in order), never a
    secondary index whose order would only cost a random row lookup per entry."""
    return " NOT INDEXED" if connection.vendor == "sqlite" else ""


def _e4(expression: str) -> str:
    return f"CAST(ROUND({expression} * {MONEY_SCALE}) AS BIGINT)"


# --- contributions, from the mirror --------------------------------------------------------------

OC_COLUMNS = "order_id, store_id, contact_id, currency, created, day, gross_e4, refunds_e4"
OLC_COLUMNS = "line_id, order_id, store_id, contact_id, product_external_id, currency, units, revenue_e4, refunds_e4"


def order_contribution_select(connection: BaseDatabaseWrapper, scope: str) -> str:
    """One row per counted order in ``scope`` (a condition on ``o``), in ``OC_COLUMNS`` order."""
    return (
        f"SELECT o.id AS order_id, o.store_id, o.contact_id, o.currency, o.date_created AS created, "
        f"{day_of(connection, 'o.date_created')} AS day, {_e4('o.total')} AS gross_e4, "
        f"{_e4('o.refunded_total')} AS refunds_e4 "
        f"FROM {ORDERS} o{_table_scan(connection)} WHERE {_COUNTED} AND {scope}"
    )


def line_contribution_select(source: str, scope: str) -> str:
    """One row per product line of the counted orders in ``source`` (``OrderContribution`` rows
    named ``oc``: the table, or ``order_contribution_select`` as a derived table) within
    ``scope`` (a condition on ``oc``), in ``OLC_COLUMNS`` order.

    Refunds are spread over the order by value (line total ÷ order total): the mirror does not
    know which lines a refund was for.
    """
    line_e4 = _e4("l.total")
    refund_share = (
        f"CASE WHEN oc.gross_e4 > 0 THEN "
        f"CAST(ROUND(1.0 * oc.refunds_e4 * {line_e4} / oc.gross_e4) AS BIGINT) ELSE 0 END"
    )
    return (
        f"SELECT l.id, oc.order_id, oc.store_id, oc.contact_id, l.product_external_id, oc.currency, "
        f"l.quantity, {line_e4}, {refund_share} "
        f"FROM {source} JOIN {LINES} l ON l.order_id = oc.order_id "
        f"WHERE l.product_external_id <> 0 AND {scope}"
    )


def contribution_table(connection: BaseDatabaseWrapper) -> str:
    """``OrderContribution`` as the source of ``line_contribution_select``, read by rowid."""
    return f"{OC} oc{_table_scan(connection)}"


def one_order_contribution(connection: BaseDatabaseWrapper) -> str:
    """One order's contribution computed from the mirror (parameter: the order id), as the
    source of ``line_contribution_select`` before it is stored."""
    return f"({order_contribution_select(connection, 'o.id = %s')}) oc"


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

    One pass through ``metrics_oc_by_contact`` in its own order (a GROUP BY on its prefix needs
    no sort); the first day's net is one index seek per contact. Scores come from the store's
    current RFM thresholds (none yet: no scores).
    """
    figures = (
        "SELECT oc.store_id, oc.contact_id, oc.currency, COUNT(*) AS order_count, "
        "COUNT(DISTINCT oc.day) AS purchase_days, SUM(oc.gross_e4) AS gross_e4, "
        "SUM(oc.refunds_e4) AS refunds_e4, SUM(oc.gross_e4 - oc.refunds_e4) AS net_e4, "
        "MIN(oc.day) AS first_day, MIN(oc.created) AS first_order_at, MAX(oc.created) AS last_order_at "
        f"FROM {OC} oc WHERE {scope} AND oc.contact_id IS NOT NULL "
        "GROUP BY oc.store_id, oc.contact_id, oc.currency"
    )
    scored = (
        f"SELECT a.*, {_score('a.last_order_at', 'r_cut')} AS r_score, "
        f"{_score('a.order_count', 'f_cut')} AS f_score, {_score('a.net_e4', 'm_cut')} AS m_score "
        f"FROM ({figures}) a LEFT JOIN {RFM} t ON t.store_id = a.store_id AND t.currency = a.currency"
    )
    first_day_net = (
        f"(SELECT SUM(f.gross_e4 - f.refunds_e4) FROM {OC} f WHERE f.store_id = s.store_id "
        "AND f.contact_id = s.contact_id AND f.currency = s.currency AND f.day = s.first_day)"
    )
    return (
        f"INSERT INTO {CM} ({CM_COLUMNS}) "
        "SELECT s.store_id, s.contact_id, s.currency, s.order_count, s.purchase_days, s.gross_e4, "
        f"s.refunds_e4, s.net_e4, {first_day_net}, s.first_order_at, s.last_order_at, "
        f"s.r_score, s.f_score, s.m_score, {_segment()} FROM ({scored}) s"
    )


# --- store aggregates, from the contributions (full recompute) ------------------------------------

DAILY_COLUMNS = "store_id, day, currency, orders, gross_e4, refunds_e4, new_customers, returning_customers"
PRODUCT_COLUMNS = (
    "store_id, product_external_id, currency, orders, units, revenue_e4, refunds_e4, buyers, repeat_buyers"
)


def daily_insert(connection: BaseDatabaseWrapper) -> str:
    """Days from the contributions; new customers from ``ContactMetrics`` (rebuilt first): a
    contact is new on the day of its first order in the currency, returning on later days."""
    return (
        f"INSERT INTO {DAILY} ({DAILY_COLUMNS}) "
        "SELECT u.store_id, u.day, u.currency, SUM(u.orders), SUM(u.gross_e4), SUM(u.refunds_e4), "
        "SUM(u.new_customers), SUM(u.customers) - SUM(u.new_customers) FROM ("
        "SELECT oc.store_id, oc.day, oc.currency, COUNT(*) AS orders, SUM(oc.gross_e4) AS gross_e4, "
        "SUM(oc.refunds_e4) AS refunds_e4, COUNT(DISTINCT oc.contact_id) AS customers, 0 AS new_customers "
        f"FROM {OC} oc WHERE oc.store_id = %s GROUP BY oc.store_id, oc.day, oc.currency "
        "UNION ALL "
        f"SELECT cm.store_id, {day_of(connection, 'cm.first_order_at')}, cm.currency, 0, 0, 0, 0, COUNT(*) "
        f"FROM {CM} cm WHERE cm.store_id = %s "
        f"GROUP BY cm.store_id, {day_of(connection, 'cm.first_order_at')}, cm.currency"
        ") u GROUP BY u.store_id, u.day, u.currency"
    )


def product_insert(connection: BaseDatabaseWrapper) -> str:
    """Products from the line contributions: sums and buyers in one sort by product, repeat
    buyers (two or more orders of the product) in one sort by contact."""
    scan = _table_scan(connection)
    return (
        f"INSERT INTO {PRODUCTS} ({PRODUCT_COLUMNS}) "
        "SELECT u.store_id, u.product_external_id, u.currency, SUM(u.orders), SUM(u.units), "
        "SUM(u.revenue_e4), SUM(u.refunds_e4), SUM(u.buyers), SUM(u.repeat_buyers) FROM ("
        "SELECT olc.store_id, olc.product_external_id, olc.currency, COUNT(DISTINCT olc.order_id) AS orders, "
        "SUM(olc.units) AS units, SUM(olc.revenue_e4) AS revenue_e4, SUM(olc.refunds_e4) AS refunds_e4, "
        "COUNT(DISTINCT olc.contact_id) AS buyers, 0 AS repeat_buyers "
        f"FROM {OLC} olc{scan} WHERE olc.store_id = %s "
        "GROUP BY olc.store_id, olc.product_external_id, olc.currency "
        "UNION ALL "
        "SELECT r.store_id, r.product_external_id, r.currency, 0, 0, 0, 0, 0, COUNT(*) FROM ("
        f"SELECT olc.store_id, olc.contact_id, olc.product_external_id, olc.currency FROM {OLC} olc{scan} "
        "WHERE olc.store_id = %s AND olc.contact_id IS NOT NULL "
        "GROUP BY olc.store_id, olc.contact_id, olc.product_external_id, olc.currency "
        "HAVING MIN(olc.order_id) < MAX(olc.order_id)) r "  # two orders or more, without DISTINCT
        "GROUP BY r.store_id, r.product_external_id, r.currency"
        ") u GROUP BY u.store_id, u.product_external_id, u.currency"
    )


# --- the incremental path's reads and writes -----------------------------------------------------

CONTACT_SCOPE = "oc.store_id = %s AND oc.contact_id = %s"
CONTACT_DAYS = f"SELECT currency, day FROM {OC} WHERE store_id = %s AND contact_id = %s GROUP BY currency, day"
CONTACT_PRODUCTS = (
    f"SELECT olc.product_external_id, olc.currency, COUNT(DISTINCT olc.order_id) FROM {OC} oc "
    f"JOIN {OLC} olc ON olc.order_id = oc.order_id WHERE oc.store_id = %s AND oc.contact_id = %s "
    "GROUP BY olc.product_external_id, olc.currency"
)
# Line contributions exist only for orders with an order contribution (same contact).
ORDERS_OF_CONTACT = (
    f"SELECT id FROM {ORDERS} WHERE contact_id = %s "
    f"UNION SELECT order_id FROM {OC} WHERE store_id = %s AND contact_id = %s"
)

OC_OF_ORDER = f"SELECT {OC_COLUMNS} FROM {OC} WHERE order_id = %s"
OLC_OF_ORDER = f"SELECT {OLC_COLUMNS} FROM {OLC} WHERE order_id = %s"
OC_DELETE_ORDER = f"DELETE FROM {OC} WHERE order_id = %s"
OLC_DELETE_ORDER = f"DELETE FROM {OLC} WHERE order_id = %s"
OC_INSERT_VALUES = f"INSERT INTO {OC} ({OC_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
OLC_INSERT_VALUES = f"INSERT INTO {OLC} ({OLC_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
CM_DELETE_CONTACT = f"DELETE FROM {CM} WHERE store_id = %s AND contact_id = %s"

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
    f"DELETE FROM {PRODUCTS} WHERE store_id = %s AND product_external_id = %s AND currency = %s AND orders = 0"
)

# --- the full recompute's batches and rebuilds ---------------------------------------------------

NEXT_ORDER_BOUND = f"SELECT id FROM {ORDERS} WHERE store_id = %s AND id > %s ORDER BY id LIMIT 1 OFFSET %s"
COUNTED_ORDERS = f"SELECT COUNT(*) FROM {OC} WHERE store_id = %s"


def delete_order_range(table: str) -> str:
    return f"DELETE FROM {table} WHERE store_id = %s AND order_id BETWEEN %s AND %s"


def other_store_rows(table: str) -> str:
    return f"SELECT 1 FROM {table} WHERE store_id <> %s LIMIT 1"


def delete_all(table: str) -> str:
    return f"DELETE FROM {table}"


def delete_store(table: str) -> str:
    return f"DELETE FROM {table} WHERE store_id = %s"


def insert_select(table: str, columns: str, select: str) -> str:
    return f"INSERT INTO {table} ({columns}) {select}"
