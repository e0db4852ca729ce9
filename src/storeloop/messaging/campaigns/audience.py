"""The audience language: which contacts of a store a campaign is for.

A condition is JSON, one of::

    {"all": [condition, ...]}     every condition holds (an empty list: every contact)
    {"any": [condition, ...]}     at least one holds (an empty list: nobody)
    {"not": condition}
    {"field": NAME, "op": OP, "value": VALUE}            (+ "currency": "EUR" where noted)

Fields (contact fields and the order metrics of ``storeloop.metrics``)::

    country          eq ne in not_in       ISO 3166 alpha-2 code(s), any case
    rfm_segment      eq ne in not_in       segment name(s) from metrics.definitions.SEGMENTS   [currency]
    total_spent      eq ne gt gte lt lte   net spend (after refunds) as "100" or "99.95"      [currency]
    order_count      eq ne gt gte lt lte   counted orders (all currencies, or one)            [currency]
    last_order_at    before after          ISO 8601 date or datetime (a date is 00:00 UTC)    [currency]
                     within_days older_than_days   whole days back from the moment it runs
    first_order_at   (as last_order_at)
    bought_product   in not_in eq ne       WooCommerce product id(s) of a counted order

Money and counts come from the contact's metrics per currency. Without ``currency`` a condition
holds when it holds in some currency the contact bought in; a contact who never bought counts as
0 spent and 0 orders (``total_spent lt 50`` includes them), and has no first or last order (date
conditions never match them). Multi-currency shops should name the currency.

``validate_audience`` checks a condition and names every bad field, operator and value (with its
path, e.g. ``all[1]``); ``compile_audience`` turns it into one ``Q`` over ``Contact``, evaluated
by the database in a single query (uncorrelated ``IN`` sub-selects, no per-contact Python).
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual, Lookup

from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.metrics.definitions import SEGMENTS
from storeloop.metrics.models import MONEY_SCALE, ContactMetrics, OrderLineContribution
from storeloop.stores.models import Store

MAX_DEPTH = 6
MAX_CONDITIONS = 100
MAX_LIST = 1000

SET_OPS = frozenset({"eq", "ne", "in", "not_in"})
NUMBER_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte"})
DATE_OPS = frozenset({"before", "after", "within_days", "older_than_days"})
LIST_OPS = frozenset({"in", "not_in"})
NEGATED = {"ne": "eq", "not_in": "in"}


class _Problem(Exception):
    pass


@dataclass(frozen=True)
class Rule:
    """One leaf, validated: values parsed, ``ne``/``not_in`` folded into ``negate``."""

    field: str
    op: str
    values: tuple[Any, ...]
    currency: str | None
    negate: bool


# --- value parsers (raise _Problem with a message that says what to send) ------------------------


def _country(value: Any) -> str:
    if not isinstance(value, str) or len(value.strip()) != 2 or not value.strip().isalpha():
        raise _Problem('a country is a two-letter ISO 3166 code such as "DE"')
    return value.strip().upper()


def _segment(value: Any) -> str:
    if value not in SEGMENTS:
        raise _Problem(f"unknown segment {value!r}; segments are {', '.join(SEGMENTS)}")
    return str(value)


def _money(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Problem('an amount is a number or a decimal string such as "100" or "99.95"')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Problem(f'{value!r} is not an amount; send e.g. "100" or "99.95"') from None
    scaled = amount * MONEY_SCALE
    if not amount.is_finite() or scaled != scaled.to_integral_value():
        raise _Problem("an amount has at most four decimals")
    if abs(scaled) >= 2**62:
        raise _Problem("that amount is too large")
    return int(scaled)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**31:
        raise _Problem("an order count is a whole number, 0 or more")
    return int(value)


def _days(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 36500:
        raise _Problem("a number of days is a whole number from 1 to 36500")
    return int(value)


def _moment(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise _Problem('a date is an ISO 8601 string such as "2026-01-31" or "2026-01-31T12:00:00Z"')
    text = value.strip()
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(0), tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _Problem(f'{value!r} is not an ISO 8601 date; send e.g. "2026-01-31"') from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _product(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise _Problem("a product is its WooCommerce product id, a positive whole number")
    return int(value)


@dataclass(frozen=True)
class FieldSpec:
    ops: frozenset[str]
    parse: Callable[[Any], Any]
    takes_currency: bool


def _date_value(op: str) -> Callable[[Any], Any]:
    return _days if op in ("within_days", "older_than_days") else _moment


FIELDS: dict[str, FieldSpec] = {
    "country": FieldSpec(SET_OPS, _country, takes_currency=False),
    "rfm_segment": FieldSpec(SET_OPS, _segment, takes_currency=True),
    "total_spent": FieldSpec(NUMBER_OPS, _money, takes_currency=True),
    "order_count": FieldSpec(NUMBER_OPS, _count, takes_currency=True),
    "last_order_at": FieldSpec(DATE_OPS, _moment, takes_currency=True),
    "first_order_at": FieldSpec(DATE_OPS, _moment, takes_currency=True),
    "bought_product": FieldSpec(SET_OPS, _product, takes_currency=False),
}


# --- validation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    kind: str  # all | any | not
    children: tuple[Node, ...]


Node = Group | Rule


class _Checker:
    def __init__(self) -> None:
        self.problems: list[dict[str, Any]] = []
        self.leaves = 0

    def fail(self, path: str, error: str, **where: Any) -> None:
        self.problems.append({"path": path or "(root)", **where, "error": error})

    def node(self, raw: Any, path: str, depth: int) -> Node | None:
        if not isinstance(raw, dict):
            self.fail(path, 'a condition is an object: {"all": [...]}, {"any": [...]}, {"not": {...}} or a rule')
            return None
        if depth > MAX_DEPTH:
            self.fail(path, f"conditions nest at most {MAX_DEPTH} levels deep")
            return None
        groups = [k for k in ("all", "any", "not") if k in raw]
        if groups:
            if len(raw) != 1:
                self.fail(path, f"a {groups[0]!r} group has no other keys; found {sorted(raw)}")
                return None
            kind = groups[0]
            if kind == "not":
                child = self.node(raw["not"], f"{path}.not" if path else "not", depth + 1)
                return Group("not", (child,)) if child is not None else None
            items = raw[kind]
            if not isinstance(items, list):
                self.fail(path, f"{kind!r} takes a list of conditions")
                return None
            children = [self.node(item, f"{path}.{kind}[{i}]" if path else f"{kind}[{i}]", depth + 1)
                        for i, item in enumerate(items)]  # fmt: skip
            if any(c is None for c in children):
                return None
            return Group(kind, tuple(c for c in children if c is not None))
        return self.rule(raw, path)

    def rule(self, raw: dict[str, Any], path: str) -> Rule | None:
        self.leaves += 1
        unknown_keys = set(raw) - {"field", "op", "value", "currency"}
        if unknown_keys:
            self.fail(path, f"unknown keys {sorted(unknown_keys)}; a rule has field, op, value (and currency)")
            return None
        name, op = raw.get("field"), raw.get("op")
        spec = FIELDS.get(name) if isinstance(name, str) else None
        if spec is None:
            self.fail(path, f"unknown field {name!r}; fields are {', '.join(FIELDS)}", field=name)
            return None
        if op not in spec.ops:
            self.fail(path, f"{name} takes the operators {', '.join(sorted(spec.ops))}, not {op!r}", field=name, op=op)
            return None
        if "value" not in raw:
            self.fail(path, "a rule needs a value", field=name, op=op)
            return None
        currency = raw.get("currency")
        if currency is not None:
            if not spec.takes_currency:
                self.fail(path, f"{name} takes no currency", field=name, op=op)
                return None
            if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
                self.fail(path, 'currency is a three-letter ISO 4217 code such as "EUR"', field=name, op=op)
                return None
            currency = currency.upper()
        value = raw["value"]
        parse = _date_value(op) if spec.parse is _moment else spec.parse
        try:
            if op in LIST_OPS:
                if not isinstance(value, list) or not value:
                    raise _Problem(f"{op} takes a non-empty list of values")
                if len(value) > MAX_LIST:
                    raise _Problem(f"{op} takes at most {MAX_LIST} values")
                values = tuple(dict.fromkeys(parse(v) for v in value))
            else:
                if isinstance(value, list):
                    raise _Problem(f"{op} takes one value; use in/not_in for a list")
                values = (parse(value),)
        except _Problem as exc:
            self.fail(path, str(exc), field=name, op=op)
            return None
        negate = op in NEGATED and spec.ops is SET_OPS
        if negate:
            op = NEGATED[op]
        return Rule(field=name, op=op, values=values, currency=currency, negate=negate)  # type: ignore[arg-type]


def validate_audience(raw: Any) -> Node:
    """Check an audience condition; raise ``ValidationError`` (code ``invalid_audience``) naming
    every problem with its path, field and operator."""
    checker = _Checker()
    node = checker.node(raw, "", 1)
    if checker.leaves > MAX_CONDITIONS:
        checker.fail("", f"an audience has at most {MAX_CONDITIONS} rules")
    if checker.problems or node is None:
        first = checker.problems[0] if checker.problems else {"path": "(root)", "error": "invalid"}
        raise ValidationError(f"invalid audience at {first['path']}: {first['error']}", code="invalid_audience",
                              details=checker.problems)  # fmt: skip
    return node


# --- compilation ------------------------------------------------------------------------------------

_COMPARE: dict[str, type[Lookup[Any]]] = {
    "eq": Exact,
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
    "lt": LessThan,
    "lte": LessThanOrEqual,
}


def _holds_for_zero(op: str, value: int) -> bool:
    compare: dict[str, Callable[[int, int], bool]] = {
        "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
        "lte": operator.le,
    }  # fmt: skip
    return compare[op](0, value)


class _Compiler:
    def __init__(self, store_id: int, now: dt.datetime) -> None:
        self.store_id = store_id
        self.now = now

    def node(self, node: Node) -> Q:
        if isinstance(node, Rule):
            q = self.rule(node)
            return ~q if node.negate else q
        if node.kind == "not":
            return ~self.node(node.children[0])
        if not node.children:
            # all([]) is everyone, any([]) nobody (spelt out: a bare Q() negates to Q()).
            return Q(pk__isnull=False) if node.kind == "all" else Q(pk__in=[])
        combined = self.node(node.children[0])
        for child in node.children[1:]:
            combined = (combined & self.node(child)) if node.kind == "all" else (combined | self.node(child))
        return combined

    def metrics(self, currency: str | None, **filters: Any) -> QuerySet[ContactMetrics]:
        rows = ContactMetrics.objects.filter(store_id=self.store_id, **filters)
        return rows.filter(currency=currency) if currency else rows

    def who(self, rows: QuerySet[Any]) -> Q:
        return Q(pk__in=rows.values("contact_id"))

    def rule(self, rule: Rule) -> Q:
        field, op, values, currency = rule.field, rule.op, rule.values, rule.currency
        if field == "country":
            return Q(country__in=values)
        if field == "rfm_segment":
            return self.who(self.metrics(currency, segment__in=values))
        if field == "bought_product":
            lines = OrderLineContribution.objects.filter(
                store_id=self.store_id, product_external_id__in=values, contact_id__isnull=False
            )
            return self.who(lines)
        if field == "total_spent":
            return self.figure("net_e4", op, values[0], currency)
        if field == "order_count":
            if currency:
                return self.figure("order_count", op, values[0], currency)
            # Counts add up across currencies (money never does).
            total = Subquery(
                ContactMetrics.objects.filter(contact_id=OuterRef("pk"))
                .values("contact_id")
                .annotate(n=Sum("order_count"))
                .values("n")[:1]
            )
            compare: Lookup[Any] = _COMPARE["eq" if op == "ne" else op](Coalesce(total, 0), values[0])
            return ~Q(compare) if op == "ne" else Q(compare)
        return self.dates(field, op, values[0], currency)

    def figure(self, column: str, op: str, value: int, currency: str | None) -> Q:
        lookup = "exact" if op in ("eq", "ne") else op
        matching = self.metrics(currency, **{f"{column}__{lookup}": value})
        if op == "ne":
            matching = self.metrics(currency).exclude(**{column: value})
        q = self.who(matching)
        if _holds_for_zero(op, value):
            # No row (never bought, or not in this currency) means 0: include those contacts.
            q |= Q(~Exists(self.metrics(currency).filter(contact_id=OuterRef("pk"))))
        return q

    def dates(self, field: str, op: str, value: Any, currency: str | None) -> Q:
        # "within the last N days" includes the moment N days ago; "before"/"after" are strict.
        inclusive = op == "within_days"
        if op == "within_days":
            op, value = "after", self.now - dt.timedelta(days=value)
        elif op == "older_than_days":
            op, value = "before", self.now - dt.timedelta(days=value)
        bought = self.who(self.metrics(currency))
        if field == "last_order_at":
            # The latest order is after X when some currency's is; before X when none is at or after X.
            if op == "after":
                return self.who(self.metrics(currency, **{f"last_order_at__{'gte' if inclusive else 'gt'}": value}))
            return bought & ~self.who(self.metrics(currency, last_order_at__gte=value))
        if op == "before":
            return self.who(self.metrics(currency, first_order_at__lt=value))
        return bought & ~self.who(self.metrics(currency, **{f"first_order_at__{'lt' if inclusive else 'lte'}": value}))


def compile_audience(store: Store | int, raw: Any, *, now: dt.datetime | None = None) -> QuerySet[Contact]:
    """The store's (unmerged) contacts the condition selects, as one queryset."""
    from django.utils import timezone

    node = validate_audience(raw)
    store_id = store if isinstance(store, int) else store.pk
    q = _Compiler(store_id, now or timezone.now()).node(node)
    return Contact.objects.filter(store_id=store_id, merged_into__isnull=True).filter(q)
