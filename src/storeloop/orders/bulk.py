"""The mirror's bulk path for the historical backfill: one batch of snapshots, a handful of queries.

Same rules as ``mirror.apply_order`` — newest ``date_modified_gmt`` wins, identical payloads change
nothing, one contact per identity — but set-based: existing versions are read in one query, new
contacts, orders, lines and refunds are written with multi-row inserts of values already prepared
for the database (``orders.prepare``, which the backfill runs in another process). Live webhooks
may write the same orders meanwhile; rows are locked (PostgreSQL) or the database is (SQLite
IMMEDIATE), and any conflict sends the batch through the per-order path instead, which is always
correct.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from storeloop.contacts.models import Contact, ContactIdentity
from storeloop.contacts.services import PersonData, identities_held, match_keys, refresh_contact_fields
from storeloop.integrations.woocommerce.models import WooOrder, parse_order
from storeloop.orders.mirror import Applied, apply_order
from storeloop.orders.models import Order, OrderLine, OrderRefund, Product
from storeloop.orders.prepare import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    REFUND_COLUMNS,
    PreparedOrder,
    db_time,
    prepare_order,
)
from storeloop.stores.models import Store

logger = logging.getLogger("storeloop.bulk")
IN_CHUNK = 500  # values per IN (...) list
MERGE_HOPS = 20  # as contacts.services follows merged contacts


def apply_orders_bulk(store: Store, snapshots: Sequence[WooOrder]) -> Counter[str]:
    """Apply a batch of order snapshots; returns outcome counts. Runs its own transaction."""
    return apply_prepared_orders(store, [prepare_order(snap) for snap in snapshots])


def apply_prepared_orders(store: Store, orders: Sequence[PreparedOrder]) -> Counter[str]:
    """Apply prepared snapshots (``orders.prepare``) in a transaction (a savepoint when one is open).

    Returns outcome counts. A conflict with a live writer rolls the batch back and applies it
    order by order through ``mirror.apply_order``.
    """
    outcomes: Counter[str] = Counter()
    latest: dict[int, PreparedOrder] = {}
    for order in orders:  # a batch may hold the same order twice (page overlap): keep the newest
        kept = latest.get(order.external_id)
        if kept is None or order.date_modified >= kept.date_modified:
            latest[order.external_id] = order
    duplicates = len(orders) - len(latest)
    outcomes[Applied.UNCHANGED] += duplicates
    try:
        with transaction.atomic():
            _apply(store, list(latest.values()), outcomes)
    except IntegrityError:
        # A webhook created one of these orders or identities between our read and our write.
        logger.info("bulk batch of store %s raced with live writes; applying order by order", store.pk)
        outcomes = Counter({Applied.UNCHANGED: duplicates})
        for order in latest.values():
            with transaction.atomic():
                outcomes[str(apply_order(store, parse_order(orjson.loads(order.content))))] += 1
    return outcomes


def _apply(store: Store, snapshots: list[PreparedOrder], outcomes: Counter[str]) -> None:
    existing = _existing_orders(store, [s.external_id for s in snapshots])
    todo: list[PreparedOrder] = []
    for snap in snapshots:
        row = existing.get(snap.external_id)
        if row is not None and row[1] > snap.date_modified:
            outcomes[Applied.STALE] += 1
        elif row is not None and row[2] == snap.payload_hash and not row[3]:
            outcomes[Applied.UNCHANGED] += 1
        else:
            todo.append(snap)
    if not todo:
        return
    contacts = _resolve_contacts(store, [_person(*snap.person) for snap in todo])
    products = _product_ids(store, {line[1] for s in todo for line in s.lines if line[1]})
    now = db_time(timezone.now())
    new_rows: list[tuple[Any, ...]] = []
    changed: list[tuple[Any, ...]] = []
    for snap, contact_id in zip(todo, contacts, strict=True):
        row = existing.get(snap.external_id)
        if row is None:
            new_rows.append((store.pk, snap.external_id, now, now, contact_id, None, *snap.values))
        else:
            changed.append((now, contact_id, None, *snap.values, row[0]))
    cursor: Any
    with connection.cursor() as cursor:
        if new_rows:
            cursor.executemany(_insert_sql(Order, _NEW_ORDER_COLUMNS), new_rows)
        if changed:
            cursor.executemany(_update_sql(Order, _CHANGED_ORDER_COLUMNS), changed)
            changed_ids = [row[-1] for row in changed]
            _delete_where_in(cursor, OrderLine, "order_id", changed_ids)
            _delete_where_in(cursor, OrderRefund, "order_id", changed_ids)
        outcomes[Applied.CREATED] += len(new_rows)
        outcomes[Applied.UPDATED] += len(changed)
        by_external = {ext: row[0] for ext, row in existing.items()}
        if new_rows:
            by_external.update(_order_ids(cursor, store, [row[1] for row in new_rows]))
        lines: list[tuple[Any, ...]] = []
        refunds: list[tuple[Any, ...]] = []
        for snap in todo:
            order_pk = by_external[snap.external_id]
            lines.extend((order_pk, products.get(line[1]), *line) for line in snap.lines)
            refunds.extend((order_pk, *refund) for refund in snap.refunds)
        if lines:
            cursor.executemany(_insert_sql(OrderLine, ("order_id", "product_id", *LINE_COLUMNS)), lines)
        if refunds:
            cursor.executemany(_insert_sql(OrderRefund, ("order_id", *REFUND_COLUMNS)), refunds)


def _person(email: str, phone: str, country: str, customer: int | None, first: str, last: str) -> PersonData:
    return PersonData.from_raw(
        email=email, phone=phone, country=country, woo_customer_id=customer, first_name=first, last_name=last
    )


_NEW_ORDER_COLUMNS = ("store_id", "external_id", "created_at", "updated_at", "contact_id", "deleted_at", *ORDER_COLUMNS)
_CHANGED_ORDER_COLUMNS = ("updated_at", "contact_id", "deleted_at", *ORDER_COLUMNS)


def _existing_orders(store: Store, external_ids: list[int]) -> dict[int, tuple[int, str, str, bool]]:
    """external id -> (pk, date_modified as db text, payload_hash, deleted), rows locked on PostgreSQL."""
    table = _table(Order)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    found: dict[int, tuple[int, str, str, bool]] = {}
    with connection.cursor() as cursor:
        for chunk in _chunks(external_ids):
            cursor.execute(
                f"SELECT external_id, id, date_modified, payload_hash, deleted_at IS NOT NULL FROM {table} "  # noqa: S608
                f"WHERE store_id = %s AND external_id IN ({_marks(len(chunk))}){lock}",
                [store.pk, *chunk],
            )
            for external_id, pk, modified, digest, deleted in cursor.fetchall():
                # SQLite hands back the stored text, PostgreSQL an aware datetime.
                text = modified if isinstance(modified, str) else db_time(modified)
                found[external_id] = (pk, text, digest, bool(deleted))
    return found


def _order_ids(cursor: Any, store: Store, external_ids: list[int]) -> dict[int, int]:
    ids: dict[int, int] = {}
    for chunk in _chunks(external_ids):
        cursor.execute(
            f"SELECT external_id, id FROM {_table(Order)} "  # noqa: S608
            f"WHERE store_id = %s AND external_id IN ({_marks(len(chunk))})",
            [store.pk, *chunk],
        )
        ids.update(cursor.fetchall())
    return ids


def _product_ids(store: Store, external_ids: set[int]) -> dict[int, int]:
    ids: dict[int, int] = {}
    if not external_ids:
        return ids
    with connection.cursor() as cursor:
        for chunk in _chunks(sorted(external_ids)):
            cursor.execute(
                f"SELECT external_id, id FROM {_table(Product)} "  # noqa: S608
                f"WHERE store_id = %s AND external_id IN ({_marks(len(chunk))})",
                [store.pk, *chunk],
            )
            ids.update(cursor.fetchall())
    return ids


@dataclass(slots=True)
class _ContactDraft:
    """A contact as this batch leaves it: loaded (``pk`` set) or to be created."""

    pk: int | None
    email: str
    phone: str
    woo_customer_id: int | None
    first_name: str
    last_name: str
    country: str
    changed: bool = False
    new_identities: list[tuple[str, str]] = field(default_factory=list)


def _resolve_contacts(store: Store, people: list[PersonData]) -> list[int | None]:
    """Contact id for each person: ``resolve_contact``'s rule applied to the batch in order.

    A person is the contact holding one of its match keys (held before or claimed earlier in the
    batch), else a new contact; identities nobody holds are attached to it, and its fields are
    refreshed as ``resolve_contact`` does. Reads in a few queries, writes in a few statements.
    """
    held = identities_held(store, [pair for p in people for pair in p.identities()])
    live = _merge_targets(set(held.values()))
    known = _load_contacts({live.get(pk, pk) for pk in held.values()})
    owner: dict[tuple[str, str], _ContactDraft] = {}
    for pair, pk in held.items():
        draft = known.get(live.get(pk, pk))
        if draft is not None:  # else deleted meanwhile: the pair is free again for the insert to fight over
            owner[pair] = draft
    created: list[_ContactDraft] = []
    chosen: list[_ContactDraft | None] = []
    for person in people:
        identities = person.identities()
        if not identities:
            chosen.append(None)
            continue
        draft = next((owner[key] for key in match_keys(person) if key in owner), None)
        if draft is None:
            draft = _ContactDraft(
                None,
                person.email or "",
                person.phone or "",
                person.woo_customer_id,
                person.first_name,
                person.last_name,
                person.country,
            )
            created.append(draft)
        elif refresh_contact_fields(draft, person):
            draft.changed = True
        for pair in identities:
            if pair not in owner:  # an identity belongs to the first contact that claims it
                owner[pair] = draft
                draft.new_identities.append(pair)
        chosen.append(draft)
    _write_contacts(store, created, list(known.values()))
    return [None if draft is None else draft.pk for draft in chosen]


def _load_contacts(pks: set[int]) -> dict[int, _ContactDraft]:
    drafts: dict[int, _ContactDraft] = {}
    if not pks:
        return drafts
    with connection.cursor() as cursor:
        for chunk in _chunks(sorted(pks)):
            cursor.execute(
                f"SELECT id, email, phone, woo_customer_id, first_name, last_name, country FROM {_table(Contact)} "  # noqa: S608
                f"WHERE id IN ({_marks(len(chunk))})",
                chunk,
            )
            for row in cursor.fetchall():
                drafts[row[0]] = _ContactDraft(*row)
    return drafts


def _write_contacts(store: Store, created: list[_ContactDraft], known: list[_ContactDraft]) -> None:
    now = db_time(timezone.now())
    changed = [draft for draft in known if draft.changed]
    with connection.cursor() as cursor:
        if created:
            rows = [
                (store.pk, now, now, d.email, d.phone, d.woo_customer_id, d.first_name, d.last_name, d.country)
                for d in created
            ]
            for draft, pk in zip(created, _insert_returning_ids(cursor, Contact, _CONTACT_COLUMNS, rows), strict=True):
                draft.pk = pk
        if changed:
            cursor.executemany(
                _update_sql(Contact, _CONTACT_FIELDS),
                [
                    (now, d.email, d.phone, d.woo_customer_id, d.first_name, d.last_name, d.country, d.pk)
                    for d in changed
                ],
            )
        identities = [
            (store.pk, draft.pk, kind, value, now)
            for draft in (*created, *known)
            for kind, value in draft.new_identities
        ]
        # Plain insert: a conflict means a live writer created one of these identities meanwhile,
        # and the IntegrityError sends the whole batch down the per-order path.
        if identities:
            cursor.executemany(
                _insert_sql(ContactIdentity, ("store_id", "contact_id", "kind", "value", "created_at")), identities
            )


def _merge_targets(contact_ids: set[int]) -> dict[int, int]:
    """For the contacts among ``contact_ids`` that were merged away, the live contact they became."""
    hops = _merged_into(contact_ids)  # source -> the contact it was merged into
    frontier = set(hops.values())
    for _ in range(MERGE_HOPS):  # a target may itself have been merged since (rare)
        frontier -= hops.keys()
        if not frontier:
            break
        more = _merged_into(frontier)
        hops.update(more)
        frontier = set(more.values())
    live: dict[int, int] = {}
    for source in contact_ids & hops.keys():
        current, seen = hops[source], 0
        while current in hops and seen < MERGE_HOPS:
            current, seen = hops[current], seen + 1
        live[source] = current
    return live


def _merged_into(contact_ids: set[int]) -> dict[int, int]:
    merged: dict[int, int] = {}
    if not contact_ids:
        return merged
    with connection.cursor() as cursor:
        for chunk in _chunks(sorted(contact_ids)):
            cursor.execute(
                f"SELECT id, merged_into_id FROM {_table(Contact)} "  # noqa: S608
                f"WHERE id IN ({_marks(len(chunk))}) AND merged_into_id IS NOT NULL",
                chunk,
            )
            merged.update(cursor.fetchall())
    return merged


_CONTACT_FIELDS = ("updated_at", "email", "phone", "woo_customer_id", "first_name", "last_name", "country")
_CONTACT_COLUMNS = ("store_id", "created_at", *_CONTACT_FIELDS)


def _insert_returning_ids(
    cursor: Any, model: type[models.Model], columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> list[int]:
    """Multi-row ``INSERT ... RETURNING id``; the ids come back in the order of the rows, as Django's
    ``bulk_create`` relies on too."""
    per_statement = (connection.features.max_query_params or 30_000) // len(columns)
    ids: list[int] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        cursor.execute(
            _insert_sql(model, columns, rows=len(chunk), returning=True), [value for row in chunk for value in row]
        )
        ids.extend(pk for (pk,) in cursor.fetchall())
    return ids


# --- SQL -------------------------------------------------------------------------------------------


def _table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def _columns(model: type[models.Model], names: Sequence[str]) -> list[str]:
    meta = model._meta
    return [connection.ops.quote_name(str(meta.get_field(name).column)) for name in names]  # type: ignore[union-attr]


def _insert_sql(model: type[models.Model], names: tuple[str, ...], *, rows: int = 1, returning: bool = False) -> str:
    return _cached_insert_sql(connection.vendor, model, names, rows, returning)


@lru_cache(maxsize=64)
def _cached_insert_sql(
    vendor: str, model: type[models.Model], names: tuple[str, ...], rows: int, returning: bool
) -> str:
    values = ", ".join([f"({_marks(len(names))})"] * rows)
    sql = f"INSERT INTO {_table(model)} ({', '.join(_columns(model, names))}) VALUES {values}"  # noqa: S608
    if returning:
        sql += f" RETURNING {connection.ops.quote_name(str(model._meta.pk.column))}"  # type: ignore[union-attr]
    return sql


def _update_sql(model: type[models.Model], names: tuple[str, ...]) -> str:
    return _cached_update_sql(connection.vendor, model, names)


@lru_cache(maxsize=16)
def _cached_update_sql(vendor: str, model: type[models.Model], names: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{column} = %s" for column in _columns(model, names))
    pk = connection.ops.quote_name(str(model._meta.pk.column))  # type: ignore[union-attr]
    return f"UPDATE {_table(model)} SET {assignments} WHERE {pk} = %s"  # noqa: S608


def _delete_where_in(cursor: Any, model: type[models.Model], name: str, values: list[int]) -> None:
    column = _columns(model, [name])[0]
    for chunk in _chunks(values):
        cursor.execute(f"DELETE FROM {_table(model)} WHERE {column} IN ({_marks(len(chunk))})", chunk)  # noqa: S608
