"""Order storage and list queries over lazy history + a small set of materialised orders.

A query merges two sorted streams without materialising the history:
- L: untouched historical indices that pass the filters, in index order (which is also date,
  modified and id order), as a virtual sequence so ``bisect`` can find date windows;
- M: changed or new orders (few), filtered and sorted explicitly.
Each M order's merged position is its rank in M plus a bisect into L, so any page is
O(|M| log N + per_page). Status/customer filters on the history build an index once (lazily).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .orders_gen import History, OrderRecord


@dataclass(frozen=True, slots=True)
class OrderQuery:
    statuses: frozenset[str] | None = None  # None = "any" (everything but trash)
    customer: int | None = None
    include: tuple[int, ...] | None = None
    after: int | None = None  # exclusive bounds, epoch seconds
    before: int | None = None
    modified_after: int | None = None
    modified_before: int | None = None
    orderby: str = "date"
    order: str = "desc"
    offset: int = 0
    limit: int = 10


class _View:
    """A sorted base sequence minus a few excluded positions, indexable for bisect."""

    __slots__ = ("_base", "_excluded", "_len")

    def __init__(self, base: Sequence[int], excluded: list[int]) -> None:
        self._base = base
        self._excluded = excluded  # sorted positions in base
        self._len = len(base) - len(excluded)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, j: int) -> int:
        if not self._excluded:
            return self._base[j]
        # Least p with p == j + #excluded<=p; that p is never itself excluded.
        p = j
        while True:
            nxt = j + bisect.bisect_right(self._excluded, p)
            if nxt == p:
                return self._base[p]
            p = nxt


class OrderStore:
    """Not thread-safe by itself: the shop calls it under its lock."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.records: dict[int, OrderRecord] = {}  # changed historical + new orders
        self.deleted: set[int] = set()  # permanently deleted ids
        self.dirty: list[int] = []  # sorted history indices that are changed or deleted
        self._status_index: dict[str, array[int]] | None = None
        self._customer_index: dict[int, array[int]] | None = None
        self._status_union: dict[frozenset[str], Sequence[int]] = {}

    # --- single orders -----------------------------------------------------------------------------

    def _hist_index(self, order_id: int) -> int | None:
        i = order_id - self.history.base_id
        return i if 0 <= i < self.history.n else None

    def get(self, order_id: int) -> OrderRecord | None:
        """The current order, or None if unknown or permanently deleted (does not store anything)."""
        if order_id in self.deleted:
            return None
        record = self.records.get(order_id)
        if record is not None:
            return record
        i = self._hist_index(order_id)
        return self.history.build(i) if i is not None else None

    def materialise(self, order_id: int) -> OrderRecord | None:
        """The stored record for a change, generating it from history on first change."""
        record = self.get(order_id)
        if record is None:
            return None
        if order_id not in self.records:
            self.records[order_id] = record
            i = self._hist_index(order_id)
            if i is not None:
                bisect.insort(self.dirty, i)
        return record

    def add(self, record: OrderRecord) -> None:
        self.records[record.id] = record

    def remove(self, order_id: int) -> None:
        self.materialise(order_id)
        self.records.pop(order_id, None)
        self.deleted.add(order_id)

    def count(self) -> int:
        """Orders that exist (including trashed)."""
        untouched = self.history.n - len(self.dirty)
        return untouched + len(self.records)

    # --- lazy indexes ------------------------------------------------------------------------------

    def _by_status(self, statuses: frozenset[str]) -> Sequence[int]:
        if self._status_index is None:
            index: dict[str, array[int]] = {}
            status_of = self.history.status
            for i in range(self.history.n):
                index.setdefault(status_of(i), array("q")).append(i)
            self._status_index = index
        cached = self._status_union.get(statuses)
        if cached is None:
            parts = [self._status_index.get(s, array("q")) for s in statuses]
            cached = parts[0] if len(parts) == 1 else array("q", sorted(i for part in parts for i in part))
            self._status_union[statuses] = cached
        return cached

    def _by_customer(self, customer: int) -> Sequence[int]:
        if self._customer_index is None:
            index: dict[int, array[int]] = {}
            customer_of = self.history.customer_id
            for i in range(self.history.n):
                index.setdefault(customer_of(i), array("q")).append(i)
            self._customer_index = index
        return self._customer_index.get(customer, array("q"))

    # --- queries -----------------------------------------------------------------------------------

    def _matches(self, record: OrderRecord, q: OrderQuery) -> bool:
        status = record.status
        if q.statuses is None:
            if status == "trash":
                return False
        elif status not in q.statuses:
            return False
        if q.customer is not None and record.data["customer_id"] != q.customer:
            return False
        if q.include is not None and record.id not in q.include:
            return False
        c, m = record.created_ts, record.modified_ts
        return not (
            (q.after is not None and c <= q.after)
            or (q.before is not None and c >= q.before)
            or (q.modified_after is not None and m <= q.modified_after)
            or (q.modified_before is not None and m >= q.modified_before)
        )

    def _sort_key(self, q: OrderQuery) -> Callable[[OrderRecord], tuple[int, int]]:
        if q.orderby == "modified":
            return lambda r: (r.modified_ts, r.id)
        if q.orderby == "id":
            return lambda r: (r.id, r.id)
        if q.orderby == "include" and q.include is not None:
            position = {order_id: n for n, order_id in enumerate(q.include)}
            return lambda r: (position.get(r.id, len(position)), r.id)
        return lambda r: (r.created_ts, r.id)

    def query(self, q: OrderQuery) -> tuple[int, list[OrderRecord]]:
        """(total matching, the requested page)."""
        total, page = self.query_lazy(q)
        h = self.history
        return total, [entry if isinstance(entry, OrderRecord) else h.build(entry - h.base_id) for entry in page]

    def query_lazy(self, q: OrderQuery) -> tuple[int, list[OrderRecord | int]]:
        """``query`` with unchanged historical orders left as their ids: building one costs ~0.2 ms,
        and a caller holding its encoded JSON does not need it."""
        if q.include is not None:
            total, found = self._query_small(q)
            return total, list(found)
        h = self.history
        base: Sequence[int]
        if q.customer is not None:
            base = self._by_customer(q.customer)
            if q.statuses is not None:
                base = array("q", (i for i in base if h.status(i) in q.statuses))
        elif q.statuses is not None:
            base = self._by_status(q.statuses)
        else:
            base = range(h.n)
        excluded: list[int] = []
        for d in self.dirty:
            pos = bisect.bisect_left(base, d)
            if pos < len(base) and base[pos] == d:
                excluded.append(pos)
        view = _View(base, excluded)
        lo, hi = 0, len(view)
        if q.after is not None:
            lo = max(lo, bisect.bisect_right(view, q.after, key=h.created_ts))
        if q.before is not None:
            hi = min(hi, bisect.bisect_left(view, q.before, key=h.created_ts))
        if q.modified_after is not None:
            lo = max(lo, bisect.bisect_right(view, q.modified_after, key=h.modified_ts))
        if q.modified_before is not None:
            hi = min(hi, bisect.bisect_left(view, q.modified_before, key=h.modified_ts))
        hi = max(lo, hi)

        sort_key = self._sort_key(q)
        materialised = sorted((r for r in self.records.values() if self._matches(r, q)), key=sort_key)
        lazy_key: Callable[[int], tuple[int, int]]
        if q.orderby == "modified":
            lazy_key = lambda i: (h.modified_ts(i), h.base_id + i)  # noqa: E731
        elif q.orderby == "id":
            lazy_key = lambda i: (h.base_id + i, h.base_id + i)  # noqa: E731
        else:
            lazy_key = lambda i: (h.created_ts(i), h.base_id + i)  # noqa: E731
        # Merged (ascending) position of each materialised order.
        positions = [
            n + bisect.bisect_left(view, sort_key(r), lo, hi, key=lazy_key) - lo for n, r in enumerate(materialised)
        ]
        total = (hi - lo) + len(materialised)
        page: list[OrderRecord | int] = []
        for p in range(q.offset, min(total, q.offset + q.limit)):
            asc = p if q.order == "asc" else total - 1 - p
            k = bisect.bisect_left(positions, asc)
            if k < len(positions) and positions[k] == asc:
                page.append(materialised[k])
            else:
                page.append(h.base_id + view[lo + asc - k])
        return total, page

    def _query_small(self, q: OrderQuery) -> tuple[int, list[OrderRecord]]:
        assert q.include is not None
        found = [r for r in (self.get(i) for i in dict.fromkeys(q.include)) if r is not None and self._matches(r, q)]
        found.sort(key=self._sort_key(q), reverse=q.order == "desc" and q.orderby != "include")
        return len(found), found[q.offset : q.offset + q.limit]

    def snapshot_ids(self) -> dict[str, Any]:
        return {"materialised": len(self.records), "deleted": len(self.deleted), "history": self.history.n}
